// Command minttoken mints the signed login tokens of relayd's
// client_id_from_token listeners (SPEC §11), for testing and as a model for
// the operator's backend, and generates keys for them.
//
//	go run ./examples/minttoken -gen es256 -out /tmp/keys    # or ed25519, hs256
//	go run ./examples/minttoken -key /tmp/keys/jwt-es256.key -sub alice -ttl 1h [-aud relay] [-kid K] [-iat]
//	relayd-client --client-id "$(go run ./examples/minttoken -key … -sub alice)" --to-client-id bob
//
// -gen writes jwt-ALG.key (the signing key, for the backend) and
// jwt-ALG.pub (what goes into [auth] jwt_key_file) and prints the key's kid,
// its RFC 7638 thumbprint. For hs256 both hold the same secret line: keep
// both as private as a private key.
//
// # What a backend puts in a token
//
// The token is a compact JWS signed with ES256 (ECDSA P-256), EdDSA
// (Ed25519) or HS256, at most 255 bytes long because it travels in the RELY
// login's ClientID:
//   - sub (required): the ClientID relayd registers the client under,
//     1–255 bytes; peers address it, and receive its frames, by this name.
//   - exp (required): expiry, seconds since the epoch. relayd checks it at
//     login only (a logged-in connection stays), so keep it short: minutes,
//     as long as a client needs to connect.
//   - nbf, iat (optional): not before / issued at; both must not be in the
//     future (60 s leeway, as for exp).
//   - aud (optional, string or array): required to contain [auth]
//     jwt_audience when that is set; use it when the same keys sign tokens
//     for other services.
//   - kid header (optional): picks the key; without it relayd tries every
//     key of the token's algorithm. It costs bytes: a thumbprint kid is 43
//     characters, so prefer a short kid set with a "kid:" PEM header.
//
// Drop the "typ" header (as this program does): relayd ignores it and the
// bytes are better spent on sub.
package main

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/relayd/relayd/internal/auth"
)

func main() {
	keyFile := flag.String("key", "", "signing key: a PEM private key (EC P-256 or Ed25519) or a file with an hs256:BASE64 line")
	sub := flag.String("sub", "", "the ClientID to log in as (sub claim)")
	ttl := flag.Duration("ttl", time.Hour, "lifetime (exp = now + ttl)")
	aud := flag.String("aud", "", "audience (aud claim); empty: none")
	kid := flag.String("kid", "", "kid header; empty: none (relayd then tries every key of the algorithm)")
	iat := flag.Bool("iat", false, "add an iat claim (issued now)")
	gen := flag.String("gen", "", "generate a key pair instead: es256, ed25519 or hs256")
	out := flag.String("out", ".", "with -gen: directory to write jwt-ALG.key and jwt-ALG.pub to")
	flag.Parse()
	// "aud":"x" rather than ["x"]: every byte of the 255 counts.
	jwt.MarshalSingleStringAsArray = false

	var err error
	switch {
	case *gen != "":
		err = generate(*gen, *out)
	case *keyFile != "" && *sub != "":
		var tok string
		if tok, err = mintFile(*keyFile, *sub, *aud, *kid, *ttl, *iat, time.Now()); err == nil {
			fmt.Println(tok)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "minttoken:", err)
		os.Exit(1)
	}
}

// mintFile signs a token with the key in path.
func mintFile(path, sub, aud, kid string, ttl time.Duration, withIAT bool, now time.Time) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	method, key, err := parseSigningKey(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	claims := jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(now.Add(ttl))}
	if aud != "" {
		claims.Audience = jwt.ClaimStrings{aud}
	}
	if withIAT {
		claims.IssuedAt = jwt.NewNumericDate(now)
	}
	tok := jwt.NewWithClaims(method, claims)
	delete(tok.Header, "typ")
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		return "", err
	}
	if len(s) > auth.MaxTokenLen {
		return "", fmt.Errorf("the token is %d bytes, over the %d a login carries: shorten -sub, or drop -kid, -aud or -iat", len(s), auth.MaxTokenLen)
	}
	return s, nil
}

// parseSigningKey reads a PEM private key or an hs256: line (comment lines
// starting with # are skipped).
func parseSigningKey(data []byte) (jwt.SigningMethod, any, error) {
	if block, _ := pem.Decode(data); block != nil {
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			return nil, nil, fmt.Errorf("PEM block %q: want a PRIVATE KEY", block.Type)
		}
		if err != nil {
			return nil, nil, err
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			if k.Curve != elliptic.P256() {
				return nil, nil, errors.New("EC key not on P-256: ES256 needs P-256")
			}
			return jwt.SigningMethodES256, k, nil
		case ed25519.PrivateKey:
			return jwt.SigningMethodEdDSA, k, nil
		}
		return nil, nil, fmt.Errorf("a %T: want an EC P-256 or Ed25519 key", key)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b64, ok := strings.CutPrefix(line, "hs256:")
		if !ok {
			break
		}
		b64 = strings.TrimRight(b64, "=")
		secret, err := base64.RawStdEncoding.DecodeString(b64)
		if err != nil {
			if secret, err = base64.RawURLEncoding.DecodeString(b64); err != nil {
				return nil, nil, errors.New("hs256: secret is not base64")
			}
		}
		return jwt.SigningMethodHS256, secret, nil
	}
	return nil, nil, errors.New("neither a PEM private key nor an hs256:BASE64 line")
}

// generate writes a new key pair for alg to dir.
func generate(alg, dir string) error {
	var priv, pub []byte
	var public any
	switch alg {
	case "es256", "ed25519":
		var signer crypto.Signer
		var err error
		if alg == "es256" {
			signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		} else {
			_, signer, err = ed25519.GenerateKey(rand.Reader)
		}
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKCS8PrivateKey(signer)
		if err != nil {
			return err
		}
		priv = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		public = signer.Public()
		if der, err = x509.MarshalPKIXPublicKey(public); err != nil {
			return err
		}
		pub = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	case "hs256":
		secret := make([]byte, 32)
		rand.Read(secret)
		public = secret
		priv = []byte("# HS256 secret: keep it as private as a private key\nhs256:" + base64.StdEncoding.EncodeToString(secret) + "\n")
		pub = priv
	default:
		return fmt.Errorf("-gen %q: want es256, ed25519 or hs256", alg)
	}
	kid, err := auth.Thumbprint(public)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keyPath, pubPath := filepath.Join(dir, "jwt-"+alg+".key"), filepath.Join(dir, "jwt-"+alg+".pub")
	pubMode := os.FileMode(0o644)
	if alg == "hs256" {
		pubMode = 0o600
	}
	if err := writeNew(keyPath, priv, 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pub, pubMode); err != nil {
		return err
	}
	fmt.Printf("wrote %s (signing key, for the backend) and %s (append to [auth] jwt_key_file)\nkid: %s\n", keyPath, pubPath, kid)
	return nil
}

// writeNew refuses to overwrite: replacing a key in use would lock out
// every client holding a token signed with it.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
