package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var now = time.Unix(1_800_000_000, 0)

// sign mints a compact token. header entries are added to alg (and typ is
// dropped, as a backend short of bytes would); a nil value removes one.
func sign(t testing.TB, m jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) []byte {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	delete(tok.Header, "typ")
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

// unsigned builds header.claims.sig from raw JSON, for tokens no signer makes.
func unsigned(header, claims, sig string) []byte {
	e := base64.RawURLEncoding.EncodeToString
	return []byte(e([]byte(header)) + "." + e([]byte(claims)) + "." + sig)
}

// valid are claims that pass at now.
func valid(extra ...any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
		} else {
			c[extra[i].(string)] = extra[i+1]
		}
	}
	return c
}

func TestVerify(t *testing.T) {
	k := newTestKeys(t)
	ks, err := ParseKeys("keys.pem", []byte(k.file(t)))
	if err != nil {
		t.Fatal(err)
	}
	ecKID, edKID, hsKID := mustThumb(t, &k.ec.PublicKey), mustThumb(t, k.ed.Public()), mustThumb(t, k.secret)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&k.ec.PublicKey)
	ecPEM := []byte(publicPEM(t, &k.ec.PublicKey, nil))
	es, ed, hs := jwt.SigningMethodES256, jwt.SigningMethodEdDSA, jwt.SigningMethodHS256
	sec := func(d time.Duration) int64 { return now.Add(d).Unix() }

	good := sign(t, es, k.ec, nil, valid())
	// Another token's claims under good's header and signature.
	gp, bp := strings.Split(string(good), "."), strings.Split(string(sign(t, es, k.ec, nil, valid("sub", "bob"))), ".")
	tampered := []byte(gp[0] + "." + bp[1] + "." + gp[2])
	// Same signature bytes under lax base64; strict decoding must refuse
	// the variant (86 characters carry 4 spare bits).
	nonCanonical := append([]byte(nil), good...)
	last := strings.IndexByte(base64URL, nonCanonical[len(nonCanonical)-1])
	nonCanonical[len(nonCanonical)-1] = base64URL[last^1]

	for _, tc := range []struct {
		name     string
		token    []byte
		audience string
		want     error
	}{
		{"ES256", good, "", nil},
		{"ES256 with kid", sign(t, es, k.ec, map[string]any{"kid": ecKID}, valid()), "", nil},
		{"EdDSA", sign(t, ed, k.ed, nil, valid()), "", nil},
		{"EdDSA with kid", sign(t, ed, k.ed, map[string]any{"kid": edKID}, valid()), "", nil},
		{"HS256", sign(t, hs, k.secret, nil, valid()), "", nil},
		{"HS256 with kid", sign(t, hs, k.secret, map[string]any{"kid": hsKID}, valid()), "", nil},
		{"typ JWT kept", sign(t, hs, k.secret, map[string]any{"typ": "JWT"}, valid()), "", nil},
		{"expired within leeway", sign(t, es, k.ec, nil, valid("exp", sec(-59*time.Second))), "", nil},
		{"expired beyond leeway", sign(t, es, k.ec, nil, valid("exp", sec(-61*time.Second))), "", ErrExpired},
		{"missing exp", sign(t, es, k.ec, nil, valid("exp", nil)), "", ErrMissingExp},
		{"exp not a number", sign(t, es, k.ec, nil, valid("exp", "tomorrow")), "", ErrMalformed},
		{"nbf within leeway", sign(t, es, k.ec, nil, valid("nbf", sec(59*time.Second))), "", nil},
		{"nbf in the future", sign(t, es, k.ec, nil, valid("nbf", sec(61*time.Second))), "", ErrNotYetValid},
		{"iat within leeway", sign(t, es, k.ec, nil, valid("iat", sec(59*time.Second))), "", nil},
		{"iat in the future", sign(t, es, k.ec, nil, valid("iat", sec(61*time.Second))), "", ErrIssuedInFuture},
		{"expired and nbf future: expired wins", sign(t, hs, k.secret, nil, valid("exp", sec(-time.Hour), "nbf", sec(time.Hour))), "", ErrExpired},
		{"audience string", sign(t, es, k.ec, nil, valid("aud", "relay")), "relay", nil},
		{"audience in list", sign(t, hs, k.secret, nil, valid("aud", []string{"web", "relay"})), "relay", nil},
		{"aud ignored when not configured", sign(t, es, k.ec, nil, valid("aud", "web")), "", nil},
		{"wrong audience", sign(t, es, k.ec, nil, valid("aud", "web")), "relay", ErrAudience},
		{"audience required, none", good, "relay", ErrAudience},
		{"bad signature (other key)", sign(t, es, other, nil, valid()), "", ErrSignature},
		{"bad signature (other key, its kid)", sign(t, es, other, map[string]any{"kid": ecKID}, valid()), "", ErrSignature},
		{"bad signature (tampered claims)", tampered, "", ErrSignature},
		{"bad signature (other secret)", sign(t, hs, []byte(strings.Repeat("x", 32)), nil, valid()), "", ErrSignature},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, valid()), "", ErrAlgorithm},
		{"alg none with kid", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, map[string]any{"kid": hsKID}, valid()), "", ErrAlgorithm},
		{"alg HS512", sign(t, jwt.SigningMethodHS512, k.secret, nil, valid()), "", ErrAlgorithm},
		{"alg RS256", unsigned(`{"alg":"RS256"}`, `{"sub":"a","exp":1900000000}`, "AAAA"), "", ErrAlgorithm},
		{"alg unknown", unsigned(`{"alg":"XX"}`, `{"sub":"a","exp":1900000000}`, "AAAA"), "", ErrAlgorithm},
		{"alg missing", unsigned(`{}`, `{"sub":"a","exp":1900000000}`, "AAAA"), "", ErrAlgorithm},
		{"unknown kid", sign(t, es, k.ec, map[string]any{"kid": "nope"}, valid()), "", ErrUnknownKey},
		{"kid not a string", sign(t, es, k.ec, map[string]any{"kid": 7}, valid()), "", ErrMalformed},
		// The classic confusion: HMAC keyed with a public key's bytes.
		{"HS256 with kid of an EC key", sign(t, hs, ecDER, map[string]any{"kid": ecKID}, valid()), "", ErrAlgorithm},
		{"HS256 keyed with EC PEM, no kid", sign(t, hs, ecPEM, nil, valid()), "", ErrSignature},
		{"ES256 with kid of the HS256 key", sign(t, es, k.ec, map[string]any{"kid": hsKID}, valid()), "", ErrAlgorithm},
		{"EdDSA with kid of the EC key", sign(t, ed, k.ed, map[string]any{"kid": ecKID}, valid()), "", ErrAlgorithm},
		{"crit header", sign(t, es, k.ec, map[string]any{"crit": []string{"exp"}}, valid()), "", ErrMalformed},
		{"empty sub", sign(t, es, k.ec, nil, valid("sub", "")), "", ErrSubject},
		{"missing sub", sign(t, es, k.ec, nil, valid("sub", nil)), "", ErrSubject},
		{"sub not a string", sign(t, es, k.ec, nil, valid("sub", 12)), "", ErrMalformed},
		// A sub over 255 bytes cannot fit in a 255-byte token: refused for length.
		{"sub too long", sign(t, hs, k.secret, nil, valid("sub", strings.Repeat("a", 256))), "", ErrMalformed},
		{"sub of 100 bytes", sign(t, hs, k.secret, nil, valid("sub", strings.Repeat("a", 100))), "", nil},
		{"token too long", sign(t, hs, k.secret, nil, valid("pad", strings.Repeat("a", 120))), "", ErrMalformed},
		{"empty", nil, "", ErrMalformed},
		{"garbage", []byte("alice"), "", ErrMalformed},
		{"two segments", []byte("eyJhbGciOiJIUzI1NiJ9.e30"), "", ErrMalformed},
		{"header not JSON", unsigned(`{"alg":`, `{}`, "AAAA"), "", ErrMalformed},
		{"claims not JSON", unsigned(`{"alg":"HS256"}`, `[1,2`, "AAAA"), "", ErrMalformed},
		{"padded base64", []byte(strings.Replace(string(good), ".", "=.", 1)), "", ErrMalformed},
		{"non-canonical base64", nonCanonical, "", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := ks.Verify(tc.token, tc.audience, now)
			if err != tc.want { // exactly the sentinel, not a wrapped one
				t.Fatalf("Verify = %q, %v; want %v", sub, err, tc.want)
			}
			if err == nil && sub != "alice" && !strings.HasPrefix(sub, "aaa") {
				t.Fatalf("sub %q", sub)
			}
			if err != nil && sub != "" {
				t.Fatalf("sub %q returned with %v", sub, err)
			}
		})
	}
}

const base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// A public-key-only file refuses every HS256 token, whatever it was keyed
// with: there is no secret to check it against.
func TestVerifyNoKeyOfThatType(t *testing.T) {
	k := newTestKeys(t)
	ecPEM := publicPEM(t, &k.ec.PublicKey, nil)
	ks, err := ParseKeys("k", []byte(ecPEM))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range [][]byte{[]byte(ecPEM), k.secret} {
		if _, err := ks.Verify(sign(t, jwt.SigningMethodHS256, key, nil, valid()), "", now); err != ErrAlgorithm {
			t.Fatalf("HS256 against an EC-only set: %v", err)
		}
	}
	if _, err := ks.Verify(sign(t, jwt.SigningMethodEdDSA, k.ed, nil, valid()), "", now); err != ErrAlgorithm {
		t.Fatalf("EdDSA against an EC-only set: %v", err)
	}
}

// Rotation: two keys of one type in one file; kid selects, and a token
// without kid verifies against either.
func TestVerifyRotation(t *testing.T) {
	old, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cur, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	file := publicPEM(t, &old.PublicKey, map[string]string{"kid": "2025"}) + publicPEM(t, &cur.PublicKey, map[string]string{"kid": "2026"})
	ks, err := ParseKeys("k", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	es := jwt.SigningMethodES256
	for _, tc := range []struct {
		name  string
		token []byte
		want  error
	}{
		{"old key, its kid", sign(t, es, old, map[string]any{"kid": "2025"}, valid()), nil},
		{"new key, its kid", sign(t, es, cur, map[string]any{"kid": "2026"}, valid()), nil},
		{"old key, no kid", sign(t, es, old, nil, valid()), nil},
		{"new key, no kid", sign(t, es, cur, nil, valid()), nil},
		{"new key, old kid", sign(t, es, cur, map[string]any{"kid": "2025"}, valid()), ErrSignature},
		{"retired kid", sign(t, es, cur, map[string]any{"kid": "2024"}, valid()), ErrUnknownKey},
	} {
		if _, err := ks.Verify(tc.token, "", now); err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestVerifyConcurrent(t *testing.T) {
	k := newTestKeys(t)
	ks, err := ParseKeys("k", []byte(k.file(t)))
	if err != nil {
		t.Fatal(err)
	}
	tokens := [][]byte{
		sign(t, jwt.SigningMethodES256, k.ec, nil, valid()),
		sign(t, jwt.SigningMethodEdDSA, k.ed, nil, valid()),
		sign(t, jwt.SigningMethodHS256, k.secret, nil, valid()),
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := ks.Verify(tokens[i%len(tokens)], "", now); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// Verify runs for every login on a token listener, before the client has
// proven anything: its cost per call must stay small and flat.
func TestVerifyAllocations(t *testing.T) {
	k := newTestKeys(t)
	ks, err := ParseKeys("k", []byte(k.file(t)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token []byte
		max   float64
	}{
		{"HS256 valid", sign(t, jwt.SigningMethodHS256, k.secret, nil, valid()), 60},
		{"EdDSA valid", sign(t, jwt.SigningMethodEdDSA, k.ed, nil, valid()), 60},
		{"ES256 valid", sign(t, jwt.SigningMethodES256, k.ec, nil, valid()), 100},
		{"garbage", []byte(strings.Repeat("x", 255)), 20},
	} {
		allocs := testing.AllocsPerRun(50, func() { _, _ = ks.Verify(tc.token, "", now) })
		t.Logf("%s: %.0f allocations", tc.name, allocs)
		if allocs > tc.max {
			t.Errorf("%s: %.0f allocations per Verify, want at most %.0f", tc.name, allocs, tc.max)
		}
	}
}

// FuzzVerify: arbitrary bytes never panic, every refusal is one of the
// sentinel kinds, and an accepted token yields a sub that fits a ClientID.
func FuzzVerify(f *testing.F) {
	k := newTestKeys(f)
	ks, err := ParseKeys("k", []byte(k.file(f)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sign(f, jwt.SigningMethodES256, k.ec, nil, valid()))
	f.Add(sign(f, jwt.SigningMethodEdDSA, k.ed, map[string]any{"kid": mustThumb(f, k.ed.Public())}, valid("aud", "relay")))
	f.Add(sign(f, jwt.SigningMethodHS256, k.secret, nil, valid("nbf", now.Unix(), "iat", now.Unix())))
	f.Add(sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, valid()))
	f.Add(unsigned(`{"alg":"HS256","crit":["b64"],"b64":false}`, `{"sub":"a","exp":1900000000}`, ""))
	f.Add([]byte("..."))
	kinds := []error{ErrMalformed, ErrAlgorithm, ErrUnknownKey, ErrSignature, ErrExpired, ErrMissingExp,
		ErrNotYetValid, ErrIssuedInFuture, ErrAudience, ErrSubject}
	f.Fuzz(func(t *testing.T, token []byte) {
		sub, err := ks.Verify(token, "relay", now)
		if err != nil {
			for _, k := range kinds {
				if err == k {
					return
				}
			}
			t.Fatalf("error %v is not a sentinel kind", err)
		}
		if len(token) > MaxTokenLen || sub == "" || len(sub) > MaxSubjectLen {
			t.Fatalf("accepted a %d-byte token with sub %q", len(token), sub)
		}
	})
}
