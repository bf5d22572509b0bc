package server

import (
	"crypto/tls"
	"errors"
	"net"

	"github.com/relayd/relayd/internal/protocol"
)

// classify maps the error that ended a read loop to the reason the
// connection ends.
func (c *conn) classify(err error) Reason {
	switch {
	case isTimeout(err):
		if c.loggedIn() {
			return ReasonIdleTimeout
		}
		return ReasonLoginTimeout
	case isViolation(err):
		return ReasonProtocolError
	default: // EOF, reset, or closed by us (then the first reason already stands)
		return ReasonEOF
	}
}

// isTimeout reports whether err is a deadline expiring, whatever layer
// (socket, TLS, a transport adapter) reported it.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isViolation(err error) bool {
	_, ok := protocol.IsViolation(err)
	var te *tokenError
	var pe *proxyError
	return ok || errors.Is(err, errIDNotInCert) || errors.Is(err, errNoKeys) ||
		errors.As(err, &te) || errors.As(err, &pe) || isTLSAlert(err)
}

func isTLSAlert(err error) bool {
	var re tls.RecordHeaderError
	var ae tls.AlertError
	var ve *tls.CertificateVerificationError
	return errors.As(err, &re) || errors.As(err, &ae) || errors.As(err, &ve)
}
