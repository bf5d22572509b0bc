// Package auth verifies the signed logins of SPEC §11: a listener with
// client_id_from_token takes a compact JWT as the login ClientID, and the
// client is registered under the token's sub. Keys come from [auth]
// jwt_key_file; signatures are checked by github.com/golang-jwt/jwt/v5.
package auth

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// MaxKeyFileSize bounds what LoadKeys reads: a key file is a handful of
// short PEM blocks, so anything larger is a wrong path, not a key file.
const MaxKeyFileSize = 1 << 20

// minHMACKey is RFC 7518 §3.2's floor for HS256: a key at least as long as
// the hash output. Shorter secrets are guessable offline from one token.
const minHMACKey = sha256.Size

// kind is a key's type, which fixes the one alg that may use it: an HS256
// token must never be checked against a public key's bytes, nor an ES256
// token against an HMAC secret.
type kind uint8

const (
	kindES256 kind = iota // *ecdsa.PublicKey on P-256
	kindEdDSA             // ed25519.PublicKey
	kindHS256             // []byte secret
	numKinds
)

func (k kind) String() string {
	return [...]string{"ES256", "EdDSA", "HS256"}[k]
}

type key struct {
	kid      string
	kind     kind
	material any // what jwt's SigningMethod.Verify takes for this kind
	line     int // where it starts in the file, for duplicate-kid errors
}

// KeySet is the parsed jwt_key_file: immutable, safe for concurrent use.
type KeySet struct {
	byKID  map[string]*key
	byKind [numKinds]jwt.VerificationKeySet // every key of a kind, for tokens without kid
	n      int
}

// Len returns the number of keys in the set.
func (k *KeySet) Len() int { return k.n }

// LoadKeys reads and parses a jwt_key_file.
func LoadKeys(path string) (*KeySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jwt_key_file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("jwt_key_file %s: %w", path, err)
	}
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("jwt_key_file %s: larger than %d bytes; is this the right file?", path, MaxKeyFileSize)
	}
	return ParseKeys(path, data)
}

// ParseKeys parses the contents of a jwt_key_file; name is used in errors.
//
// The file holds, in any order and separated by blank lines or "#" comment
// lines:
//   - PEM "PUBLIC KEY" blocks (PKIX) with an EC P-256 key (for ES256) or an
//     Ed25519 key (for EdDSA), optionally with a "kid: VALUE" PEM header;
//   - lines "hs256:SECRET" with the HS256 secret in base64, standard or URL
//     alphabet, padding optional, at least 32 bytes once decoded.
//
// A key's kid is its PEM kid header if it has one, else its RFC 7638 JWK
// thumbprint. Errors name the file and the line; they never echo a secret.
func ParseKeys(name string, data []byte) (*KeySet, error) {
	ks := &KeySet{byKID: make(map[string]*key)}
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("jwt_key_file %s: line %d: %s", name, line, fmt.Sprintf(format, args...))
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, MaxKeyFileSize+1)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		var k *key
		var err error
		start := lineNo
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "-----BEGIN "):
			// Gather the block so pem.Decode sees exactly it: what lies
			// outside blocks is ours to check, not pem's to skip.
			var block bytes.Buffer
			block.WriteString(line + "\n")
			closed := false
			for !closed && sc.Scan() {
				lineNo++
				l := strings.TrimSpace(sc.Text())
				block.WriteString(l + "\n")
				closed = strings.HasPrefix(l, "-----END ")
			}
			if !closed {
				return nil, fail(start, "PEM block %q has no END line", strings.TrimPrefix(strings.Trim(line, "- "), "BEGIN "))
			}
			k, err = parsePEM(block.Bytes())
		case strings.HasPrefix(line, "hs256:"):
			k, err = parseHS256(strings.TrimPrefix(line, "hs256:"))
		default:
			return nil, fail(lineNo, "neither a PEM block nor an hs256:BASE64 line (comments start with #)")
		}
		if err != nil {
			return nil, fail(start, "%v", err)
		}
		if prev, dup := ks.byKID[k.kid]; dup {
			return nil, fail(start, "kid %q already used by the key on line %d", k.kid, prev.line)
		}
		k.line = start
		ks.byKID[k.kid] = k
		ks.byKind[k.kind].Keys = append(ks.byKind[k.kind].Keys, k.material)
		ks.n++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("jwt_key_file %s: line %d: %w", name, lineNo+1, err)
	}
	if ks.n == 0 {
		return nil, fmt.Errorf("jwt_key_file %s: holds no key (PEM PUBLIC KEY blocks or hs256: lines)", name)
	}
	return ks, nil
}

func parsePEM(data []byte) (*key, error) {
	block, rest := pem.Decode(data)
	if block == nil || len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("not a valid PEM block")
	}
	if block.Type != "PUBLIC KEY" {
		if strings.Contains(block.Type, "PRIVATE") {
			return nil, fmt.Errorf("PEM block %q is a private key: jwt_key_file takes public keys only; keep the private key on the backend that mints tokens", block.Type)
		}
		return nil, fmt.Errorf("PEM block %q: want \"PUBLIC KEY\"", block.Type)
	}
	var kid string
	for h, v := range block.Headers {
		if h != "kid" {
			return nil, fmt.Errorf("PEM block %q: unknown header %q (only kid is understood)", block.Type, h)
		}
		if v == "" {
			return nil, fmt.Errorf("PEM block %q: empty kid header", block.Type)
		}
		kid = v
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
	}
	k := &key{material: pub}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("PEM block %q: EC key on %s: ES256 needs P-256", block.Type, p.Curve.Params().Name)
		}
		k.kind = kindES256
	case ed25519.PublicKey:
		k.kind = kindEdDSA
	default:
		return nil, fmt.Errorf("PEM block %q: a %T: only EC P-256 (ES256) and Ed25519 (EdDSA) keys are accepted", block.Type, pub)
	}
	if kid == "" {
		if kid, err = Thumbprint(pub); err != nil {
			return nil, err
		}
	}
	k.kid = kid
	return k, nil
}

func parseHS256(s string) (*key, error) {
	secret, err := decodeBase64(s)
	if err != nil {
		return nil, errors.New("hs256: secret is not base64 (standard or URL alphabet)")
	}
	if len(secret) < minHMACKey {
		return nil, fmt.Errorf("hs256: secret is %d bytes: HS256 needs at least %d (RFC 7518 §3.2); generate one with examples/minttoken -gen hs256", len(secret), minHMACKey)
	}
	kid, _ := Thumbprint(secret)
	return &key{kid: kid, kind: kindHS256, material: secret}, nil
}

// decodeBase64 accepts both RFC 4648 alphabets, padded or not: operators
// paste secrets from whatever tool made them. The two alphabets differ only
// in two characters, so no string decodes differently under both.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawStdEncoding.Strict().DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// Thumbprint returns the RFC 7638 JWK thumbprint (base64url SHA-256 without
// padding) of an *ecdsa.PublicKey on P-256, an ed25519.PublicKey, or an
// HS256 secret ([]byte, as the "oct" JWK). It is the kid relayd gives a key
// whose PEM block has no kid header.
func Thumbprint(pub any) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var jwk string
	// Members in lexicographic order, no whitespace (RFC 7638 §3.2); base64url
	// values need no JSON escaping.
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		ec, err := p.ECDH()
		if err != nil || p.Curve != elliptic.P256() {
			return "", errors.New("thumbprint: EC key is not on P-256")
		}
		pt := ec.Bytes() // 0x04 || X || Y, each 32 bytes
		jwk = `{"crv":"P-256","kty":"EC","x":"` + b64(pt[1:33]) + `","y":"` + b64(pt[33:]) + `"}`
	case ed25519.PublicKey:
		jwk = `{"crv":"Ed25519","kty":"OKP","x":"` + b64(p) + `"}`
	case []byte:
		jwk = `{"k":"` + b64(p) + `","kty":"oct"}`
	default:
		return "", fmt.Errorf("thumbprint: unsupported key type %T", pub)
	}
	sum := sha256.Sum256([]byte(jwk))
	return b64(sum[:]), nil
}
