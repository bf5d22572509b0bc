package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/relayd/relayd/client"
)

// The protocol has no login acknowledgement and the server closes a
// connection without saying why, so what a failure means has to be read
// from when it happened and what the server did answer. These functions
// turn each failure into a message that names what to fix.

// loginWindow is how soon after the login a close, with nothing received,
// counts as a refused login rather than a kick or a timeout: the server
// refuses a login (a certificate that does not match the ID, a bad token, a
// plain client on a TLS port) as soon as it reads it, one round trip after
// it was sent.
const loginWindow = time.Second

// dialTimeout bounds the TCP connect and the TLS handshake together.
const dialTimeout = 10 * time.Second

// probeTimeout bounds the TLS probe made after a plain connection was
// refused.
const probeTimeout = 2 * time.Second

// connect dials addr and, with tc, completes the TLS handshake; its errors
// say which step failed and why.
func connect(ctx context.Context, addr string, tc *tls.Config, o *options) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %s", addr, dialProblem(err))
	}
	if tc == nil {
		return nc, nil
	}
	tlsConn := tls.Client(nc, tc)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("connect to %s: %s", addr, handshakeProblem(err, o))
	}
	return tlsConn, nil
}

func dialProblem(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing is listening there (is relayd running? check --host and --port)"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %v (check --host; a firewall may be dropping the packets)", dialTimeout)
	}
	return err.Error()
}

func handshakeProblem(err error, o *options) string {
	var (
		rec      tls.RecordHeaderError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case notTLS(err), errors.As(err, &rec):
		return fmt.Sprintf("server did not answer TLS (is it a plain listener? try without --tls): %v", err)
	case errors.As(err, &hostname):
		return fmt.Sprintf("TLS handshake failed: %v (give --server-name with a name the server's certificate is issued for)", err)
	case errors.As(err, &verify):
		return fmt.Sprintf("TLS handshake failed: %v (give --ca with the CA that signed the server's certificate)", err)
	case isAlert(err):
		return fmt.Sprintf("TLS handshake failed: %v%s", err, certHint(o))
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("TLS handshake failed: no answer within %v (is it a relayd listener?)", dialTimeout)
	}
	return fmt.Sprintf("TLS handshake failed: %v", err)
}

// notTLS reports whether err is how a peer that does not speak TLS ends a
// handshake: a plain relayd listener reads the ClientHello as a bad frame
// and closes the connection.
func notTLS(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// isAlert reports whether err is a TLS alert the server sent.
func isAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

func certHint(o *options) string {
	if o.cert == "" {
		return " (does the listener require a client certificate? give --cert and --key)"
	}
	return " (is --cert signed by the CA in the listener's tls_client_ca, and still valid?)"
}

// session remembers what the client saw of a logged-in connection, to tell
// a refused login from a later close.
type session struct {
	o        *options
	addr     string
	tls      bool
	loggedIn time.Time   // when the login was written
	received atomic.Bool // a frame arrived: the login was accepted
}

// problem describes err, which ended the session.
func (s *session) problem(err error) string {
	if !errors.Is(err, client.ErrServerClosed) {
		return err.Error()
	}
	if isAlert(err) {
		// TLS 1.3: the client's handshake finishes before the server has
		// checked its certificate, so the verdict comes with the first read.
		return fmt.Sprintf("the server rejected the client certificate: %v%s", cause(err), certHint(s.o))
	}
	if s.received.Load() || time.Since(s.loggedIn) > loginWindow {
		return "connection closed by server after the login (kicked by a newer login with the same ID, timed out, or the server stopped)"
	}
	if !s.tls && speaksTLS(s.addr, s.o.host) {
		return "the server closed the plain connection right after the login: it answers TLS on this port (is the server expecting TLS? try --tls)"
	}
	msg := "connection closed by server before the login completed: the server refused the login"
	switch {
	case s.tls && s.o.cert != "":
		return msg + " (on a listener with client_id_from_cert, --client-id must be the certificate's CN or one of its SANs)"
	case s.tls:
		return msg + " (a listener with client_id_from_token takes only a signed token as --client-id; connection limits refuse too)"
	}
	return msg + " (a listener with client_id_from_token takes only a signed token as --client-id; max_connections, max_connections_per_ip and logins_per_ip refuse too)"
}

// cause strips client.ErrServerClosed from err's message.
func cause(err error) error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range u.Unwrap() {
			if e != client.ErrServerClosed {
				return e
			}
		}
	}
	return err
}

// speaksTLS reports whether the server at addr answers a TLS handshake. It
// is asked only after the server closed a plain connection right after its
// login, to tell a TLS port from a refused login; it checks nothing but
// that TLS is spoken, hence InsecureSkipVerify.
func speaksTLS(addr, host string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer nc.Close()
	tc := tls.Client(nc, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	err = tc.HandshakeContext(ctx)
	return err == nil || isAlert(err)
}
