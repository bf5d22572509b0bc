package server

import (
	"crypto/tls"
	"slices"
)

// certIDs lists the identities a verified client certificate vouches for:
// its subject CN and every SAN (DNS names, e-mail addresses, URIs, IPs).
func certIDs(cs tls.ConnectionState) []string {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	var ids []string
	if leaf.Subject.CommonName != "" {
		ids = append(ids, leaf.Subject.CommonName)
	}
	ids = append(ids, leaf.DNSNames...)
	ids = append(ids, leaf.EmailAddresses...)
	for _, u := range leaf.URIs {
		ids = append(ids, u.String())
	}
	for _, ip := range leaf.IPAddresses {
		ids = append(ids, ip.String())
	}
	return ids
}

// allowedID reports whether id is one of the certificate's identities.
func allowedID(ids []string, id []byte) bool {
	return slices.Contains(ids, string(id))
}
