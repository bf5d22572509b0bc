package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKeys are one key of each kind, with their public halves as
// jwt_key_file text.
type testKeys struct {
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
	secret []byte
}

func newTestKeys(t testing.TB) *testKeys {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	return &testKeys{ec: ec, ed: ed, secret: secret}
}

// publicPEM is pub as a PEM PUBLIC KEY block with the given headers.
func publicPEM(t testing.TB, pub any, headers map[string]string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: headers, Bytes: der}))
}

func hsLine(secret []byte) string {
	return "hs256:" + base64.StdEncoding.EncodeToString(secret) + "\n"
}

func (k *testKeys) file(t testing.TB) string {
	return "# relayd test keys\n" +
		publicPEM(t, &k.ec.PublicKey, nil) + "\n" +
		publicPEM(t, k.ed.Public(), nil) +
		hsLine(k.secret)
}

func mustThumb(t testing.TB, pub any) string {
	t.Helper()
	s, err := Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseKeys(t *testing.T) {
	k := newTestKeys(t)
	ks, err := ParseKeys("keys.pem", []byte(k.file(t)))
	if err != nil {
		t.Fatal(err)
	}
	if ks.Len() != 3 {
		t.Fatalf("Len = %d, want 3", ks.Len())
	}
	for _, pub := range []any{&k.ec.PublicKey, k.ed.Public(), k.secret} {
		kid := mustThumb(t, pub)
		if ks.byKID[kid] == nil {
			t.Errorf("no key under thumbprint %s (%T)", kid, pub)
		}
	}
}

func TestParseKeysKIDHeader(t *testing.T) {
	k := newTestKeys(t)
	file := publicPEM(t, &k.ec.PublicKey, map[string]string{"kid": "2026-01"})
	ks, err := ParseKeys("keys.pem", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if ks.byKID["2026-01"] == nil || ks.byKID[mustThumb(t, &k.ec.PublicKey)] != nil {
		t.Fatalf("kid header not used instead of the thumbprint: %v", ks.byKID)
	}
}

func TestParseKeysBase64Alphabets(t *testing.T) {
	// 0xfb 0xff gives '+' and '/' in standard base64, '-' and '_' in URL.
	secret := []byte(strings.Repeat("\xfb\xff", 16))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		ks, err := ParseKeys("k", []byte("hs256:"+enc.EncodeToString(secret)))
		if err != nil {
			t.Fatalf("%s: %v", enc.EncodeToString(secret), err)
		}
		if ks.byKID[mustThumb(t, secret)] == nil {
			t.Fatalf("%s: secret decoded wrongly", enc.EncodeToString(secret))
		}
	}
}

func TestParseKeysErrors(t *testing.T) {
	k := newTestKeys(t)
	ecPEM := publicPEM(t, &k.ec.PublicKey, nil)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(k.ec)
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))
	for _, tc := range []struct {
		name, file, want string
	}{
		{"empty", "", "holds no key"},
		{"comments only", "# nothing\n\n", "holds no key"},
		{"garbage line", "# ok\nssh-ed25519 AAAA\n", "line 2: neither a PEM block"},
		{"unterminated PEM", "\n" + strings.SplitAfter(ecPEM, "\n")[0] + "MFkw\n", "line 2: PEM block \"PUBLIC KEY\" has no END"},
		{"bad base64 in PEM", "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n", "line 1: not a valid PEM block"},
		{"private key", privPEM, "is a private key"},
		{"certificate", "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", `"CERTIFICATE": want "PUBLIC KEY"`},
		{"not PKIX", "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n", "line 1: PEM block \"PUBLIC KEY\""},
		{"P-384", publicPEM(t, &p384.PublicKey, nil), "ES256 needs P-256"},
		{"RSA", publicPEM(t, &rsaKey.PublicKey, nil), "only EC P-256 (ES256) and Ed25519 (EdDSA)"},
		{"unknown PEM header", publicPEM(t, &k.ec.PublicKey, map[string]string{"Proc-Type": "4,ENCRYPTED"}), `unknown header "Proc-Type"`},
		{"empty kid", publicPEM(t, &k.ec.PublicKey, map[string]string{"kid": ""}), "empty kid header"},
		{"hs256 not base64", "hs256:not*base64\n", "line 1: hs256: secret is not base64"},
		{"hs256 short", "\n\nhs256:" + short + "\n", "line 3: hs256: secret is 31 bytes"},
		{"duplicate key", ecPEM + ecPEM, "already used by the key on line 1"},
		{"duplicate kid", publicPEM(t, &k.ec.PublicKey, map[string]string{"kid": "a"}) + publicPEM(t, k.ed.Public(), map[string]string{"kid": "a"}), `kid "a" already used`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeys("/etc/relayd/jwt.pem", []byte(tc.file))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "jwt_key_file /etc/relayd/jwt.pem: ") || !strings.Contains(msg, tc.want) {
				t.Fatalf("error %q does not name the file and %q", msg, tc.want)
			}
		})
	}
}

// A secret that is refused must not be echoed in the error.
func TestParseKeysErrorHidesSecret(t *testing.T) {
	for _, line := range []string{"hs256:c2hvcnRzZWNyZXQ=", "hs256:c2hvcnRzZWNyZXQ=*"} {
		_, err := ParseKeys("k", []byte(line))
		if err == nil || strings.Contains(err.Error(), "c2hvcnRzZWNyZXQ") {
			t.Fatalf("error %v", err)
		}
	}
}

func TestLoadKeys(t *testing.T) {
	k := newTestKeys(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "jwt.pem")
	if err := os.WriteFile(path, []byte(k.file(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	if ks, err := LoadKeys(path); err != nil || ks.Len() != 3 {
		t.Fatalf("LoadKeys: %v", err)
	}
	if _, err := LoadKeys(filepath.Join(dir, "missing.pem")); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, MaxKeyFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized file: %v", err)
	}
}

// Thumbprint vectors. Each expected value was computed outside Go (xxd,
// openssl, base64), e.g.
//
//	printf '%s' '{"crv":"P-256","kty":"EC","x":"…","y":"…"}' | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d =
//
// and the Ed25519 one is RFC 8037 Appendix A.3's.
func TestThumbprint(t *testing.T) {
	b64 := base64.RawURLEncoding
	dec := func(s string) []byte {
		b, err := b64.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// P-256's base point G: the public key of the private key 1.
	g := elliptic.P256().Params()
	pt := append(append([]byte{4}, g.Gx.FillBytes(make([]byte, 32))...), g.Gy.FillBytes(make([]byte, 32))...)
	ec, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i)
	}
	for _, tc := range []struct {
		name string
		key  any
		want string
	}{
		{"EC P-256 G", ec, "xx0BcA-wMohw8atYDJOe6peGModklG2wRHBlXHMvl0M"},
		{"OKP Ed25519 (RFC 8037 A.3)", ed25519.PublicKey(dec("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
		{"oct", secret, "WqjPPRvAP8oYbAqCwMErhzTg-Quaz-vLx_cef07yhOs"},
	} {
		if got := mustThumb(t, tc.key); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if _, err := Thumbprint("a string"); err == nil {
		t.Error("thumbprint of a string")
	}
}

// Cross-check on fresh keys: the canonical JWK built another way
// (encoding/json sorts map keys and adds no whitespace) hashes the same.
func TestThumbprintMatchesJSON(t *testing.T) {
	k := newTestKeys(t)
	b64 := base64.RawURLEncoding.EncodeToString
	pt, _ := k.ec.PublicKey.ECDH()
	ecPt := pt.Bytes()
	for _, tc := range []struct {
		key any
		jwk map[string]string
	}{
		{&k.ec.PublicKey, map[string]string{"kty": "EC", "crv": "P-256", "x": b64(ecPt[1:33]), "y": b64(ecPt[33:])}},
		{k.ed.Public(), map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(k.ed.Public().(ed25519.PublicKey))}},
		{k.secret, map[string]string{"kty": "oct", "k": b64(k.secret)}},
	} {
		js, err := json.Marshal(tc.jwk)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(js)
		if got, want := mustThumb(t, tc.key), b64(sum[:]); got != want {
			t.Errorf("%s: %s, want %s", js, got, want)
		}
	}
}

func FuzzParseKeys(f *testing.F) {
	k := newTestKeys(f)
	f.Add([]byte(k.file(f)))
	f.Add([]byte(publicPEM(f, &k.ec.PublicKey, map[string]string{"kid": "k1"})))
	f.Add([]byte("hs256:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n"))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nkid: x\n\nMAA=\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := ParseKeys("fuzz", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "jwt_key_file fuzz: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if ks.Len() == 0 || ks.Len() != len(ks.byKID) {
			t.Fatalf("Len %d, %d kids", ks.Len(), len(ks.byKID))
		}
	})
}
