package server

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/syncbuf"
)

// Signed logins (SPEC §11) over real sockets: tokens minted here with
// golang-jwt, as an operator's backend would, against keys in a file the
// server reads at Apply.

const audience = "relayd"

// signer is one key an operator's backend signs with, and its public half
// as jwt_key_file text.
type signer struct {
	method jwt.SigningMethod
	key    any    // what SignedString takes
	kid    string // set on minted tokens when not ""
	line   string // its jwt_key_file entry
}

func newES256(t *testing.T, kid string) *signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{method: jwt.SigningMethodES256, key: k, kid: kid, line: publicPEM(t, &k.PublicKey, kid)}
}

func newEdDSA(t *testing.T, kid string) *signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{method: jwt.SigningMethodEdDSA, key: k, kid: kid, line: publicPEM(t, k.Public(), kid)}
}

func newHS256(t *testing.T) *signer {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	return &signer{method: jwt.SigningMethodHS256, key: secret, line: "hs256:" + base64.StdEncoding.EncodeToString(secret) + "\n"}
}

func publicPEM(t *testing.T, pub any, kid string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b := &pem.Block{Type: "PUBLIC KEY", Bytes: der}
	if kid != "" {
		b.Headers = map[string]string{"kid": kid}
	}
	return string(pem.EncodeToMemory(b))
}

// claims are valid for an hour, for sub; pairs of extra set (or, with a
// nil value, remove) claims.
func claims(sub string, extra ...any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "aud": audience, "exp": time.Now().Add(time.Hour).Unix()}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
		} else {
			c[extra[i].(string)] = extra[i+1]
		}
	}
	return c
}

// mint signs c as a compact token, without the optional typ header (a
// ClientID has 255 bytes to spare).
func (s *signer) mint(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, c)
	delete(tok.Header, "typ")
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	str, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	if len(str) > 255 {
		t.Fatalf("minted a %d-byte token: no login can carry it", len(str))
	}
	return str
}

// writeKeys (re)writes the key file with the public halves of signers.
func writeKeys(t *testing.T, path string, signers ...*signer) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# relayd test keys\n")
	for _, s := range signers {
		b.WriteString(s.line + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tokenServer runs a server with a client_id_from_token listener "token"
// beside a plain listener "plain", keys from a file, and debug logs kept
// for the test to read.
type tokenServer struct {
	s            *Server
	cfg          *config.Config
	keys         string // the jwt_key_file
	token, plain string // listener addresses
	logs         *syncbuf.Buffer
}

func startTokenServer(t *testing.T, signers ...*signer) *tokenServer {
	t.Helper()
	ts := &tokenServer{keys: filepath.Join(t.TempDir(), "jwt.pem"), logs: &syncbuf.Buffer{}}
	writeKeys(t, ts.keys, signers...)
	ts.cfg = configWith(
		listenerCfg("token", func(l *config.Listener) { l.ClientIDFromToken = true }),
		listenerCfg("plain", nil),
	)
	ts.cfg.Auth = &config.Auth{JWTKeyFile: ts.keys, JWTAudience: audience}
	log := slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts.s = startServerWith(t, ts.cfg, func(s *Server) { s.log = log })
	ts.token, ts.plain = ts.s.Addrs()["token"].String(), ts.s.Addrs()["plain"].String()
	return ts
}

// refused logs in with id on the token listener and checks the server
// closes the connection as a protocol error, registering (or kicking)
// no one under id or sub. It returns the debug log line of the refusal.
func (ts *tokenServer) refused(t *testing.T, id, sub string) string {
	t.Helper()
	was := map[string]any{}
	for _, who := range []string{sub, id} {
		was[who], _ = ts.s.reg.Lookup([]byte(who))
	}
	before := disconnects(ts.s, ReasonProtocolError)
	c := dialRaw(t, ts.token)
	mustWrite(t, c, loginFrame(id))
	waitClosed(t, c, 5*time.Second)
	eventually(t, "the refusal is counted as protocol_error", func() bool {
		return disconnects(ts.s, ReasonProtocolError) == before+1
	})
	for who, p := range was {
		if now, _ := ts.s.reg.Lookup([]byte(who)); now != p {
			t.Fatalf("%q is registered anew after a refused login", who)
		}
	}
	var line string
	eventually(t, "the refusal is logged", func() bool {
		for l := range strings.Lines(ts.logs.String()) {
			if strings.Contains(l, "remote="+c.LocalAddr().String()+" ") {
				line = l
				return true
			}
		}
		return false
	})
	return line
}

// A valid token logs in as its sub: peers address it by the sub and see
// the sub as the sender, whether it sends with its sub or with its token.
func TestTokenLogin(t *testing.T) {
	for _, mk := range []func(*testing.T) *signer{
		func(t *testing.T) *signer { return newES256(t, "") },
		func(t *testing.T) *signer { return newEdDSA(t, "") },
		newHS256,
		func(t *testing.T) *signer { return newES256(t, "ec-1") }, // kid from the PEM header
	} {
		k := mk(t)
		t.Run(k.method.Alg()+" kid="+k.kid, func(t *testing.T) {
			ts := startTokenServer(t, newEdDSA(t, "other"), k)
			token := k.mint(t, claims("alice"))
			alice := dialRaw(t, ts.token)
			mustWrite(t, alice, loginFrame(token))
			waitOnline(t, ts.s, "alice")
			if _, ok := ts.s.reg.Lookup([]byte(token)); ok {
				t.Fatal("registered under the token, not its sub")
			}
			if cl := ts.s.Clients("alice"); len(cl) != 1 || cl[0].Listener != "token" {
				t.Fatalf("Clients(alice) = %+v", cl)
			}
			bob := loginRaw(t, ts.s, ts.plain, "bob")

			// Addressed by its sub, from the plain listener.
			mustWrite(t, bob, transferFrame("bob", "alice", []byte("to alice")))
			readExactly(t, alice, transferFrame("bob", "alice", []byte("to alice")))
			// Sending as its sub: forwarded as received.
			mustWrite(t, alice, transferFrame("alice", "bob", []byte("as sub")))
			readExactly(t, bob, transferFrame("alice", "bob", []byte("as sub")))
			// Sending as its token: rewritten to the sub, as if sent so.
			mustWrite(t, alice, transferFrame(token, "bob", []byte("as token")))
			readExactly(t, bob, transferFrame("alice", "bob", []byte("as token")))
			// A heartbeat with the token as FromClientID is a heartbeat.
			mustWrite(t, alice, transferFrame(token, "", nil))
			mustWrite(t, alice, transferFrame(token, "alice", []byte("to self")))
			readExactly(t, alice, transferFrame("alice", "alice", []byte("to self")))
			// Anyone else's name is still refused.
			mustWrite(t, alice, transferFrame("bob", "bob", []byte("forged")))
			waitClosed(t, alice, 5*time.Second)
			expectOpen(t, bob, 50*time.Millisecond)
		})
	}
}

// Every kind of bad token is refused on the token listener (closed,
// counted as protocol_error, logged without the token), while a plain
// listener beside it takes any ClientID as it always has.
func TestTokenRefused(t *testing.T) {
	es, ed, hs := newES256(t, ""), newEdDSA(t, "ed-1"), newHS256(t)
	ts := startTokenServer(t, es, ed, hs)
	now := time.Now()
	sec := func(d time.Duration) int64 { return now.Add(d).Unix() }
	raw := func(header, body, sig string) string {
		e := base64.RawURLEncoding.EncodeToString
		return e([]byte(header)) + "." + e([]byte(body)) + "." + sig
	}
	valid := es.mint(t, claims("eve"))
	parts := strings.Split(valid, ".")
	stranger := newES256(t, "")
	unknownKID := newES256(t, "nope")
	edAsES := &signer{method: jwt.SigningMethodES256, key: stranger.key, kid: "ed-1"}
	// The HS256 "secret" an attacker knows: the bytes of a public key.
	pubAsSecret := &signer{method: jwt.SigningMethodHS256, key: []byte(es.line)}

	noneClaims := `{"sub":"eve","aud":"relayd","exp":` + strconv.FormatInt(sec(time.Hour), 10) + `}`
	cases := []struct{ name, token, why string }{
		{"expired beyond the 60s leeway", es.mint(t, claims("eve", "exp", sec(-61*time.Second))), "token expired"},
		{"nbf in the future", es.mint(t, claims("eve", "nbf", sec(2*time.Minute))), "token nbf in the future"},
		{"iat in the future", es.mint(t, claims("eve", "iat", sec(2*time.Minute))), "token iat in the future"},
		{"missing exp", es.mint(t, claims("eve", "exp", nil)), "token has no exp"},
		{"bad signature: another key", stranger.mint(t, claims("eve")), "token signature invalid"},
		{"bad signature: tampered claims", parts[0] + "." + strings.Split(es.mint(t, claims("mallory")), ".")[1] + "." + parts[2], "token signature invalid"},
		{"alg none", raw(`{"alg":"none"}`, noneClaims, ""), "token alg not allowed"},
		{"alg none with a signature", raw(`{"alg":"none"}`, noneClaims, parts[2]), "token alg not allowed"},
		{"unknown kid", unknownKID.mint(t, claims("eve")), "token kid unknown"},
		{"kid of a key of another type", edAsES.mint(t, claims("eve")), "token alg not allowed"},
		{"HS256 keyed with a public key", pubAsSecret.mint(t, claims("eve")), "token signature invalid"},
		{"wrong audience", es.mint(t, claims("eve", "aud", "other")), "token aud does not match"},
		{"no audience", es.mint(t, claims("eve", "aud", nil)), "token aud does not match"},
		{"no sub", es.mint(t, claims("eve", "sub", nil)), "token sub missing"},
		{"garbage", "not a token at all", "token malformed"},
		{"garbage with dots", "a.b.c", "token malformed"},
		{"binary garbage", "\x00\xff\x01.", "token malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			line := ts.refused(t, tc.token, "eve")
			if !strings.Contains(line, "reason=protocol_error") || !strings.Contains(line, "login token refused: "+tc.why) {
				t.Errorf("logged %q, want protocol_error and %q", line, tc.why)
			}
		})
	}
	// Within the leeway, an expired token still logs in.
	c := dialRaw(t, ts.token)
	mustWrite(t, c, loginFrame(es.mint(t, claims("eve", "exp", sec(-30*time.Second)))))
	waitOnline(t, ts.s, "eve")

	// The plain listener does not look at tokens: a plain name logs in
	// there, and the same name is refused on the token listener, without
	// kicking the plain one.
	loginRaw(t, ts.s, ts.plain, "mallory")
	ts.refused(t, "mallory", "mallory")

	// The reason is logged at debug (above), the token never.
	logs := ts.logs.String()
	for _, tc := range cases {
		if len(tc.token) >= 10 && strings.Contains(logs, tc.token) {
			t.Errorf("the token of %q was logged:\n%s", tc.name, logs)
		}
	}
}

// The check is at login: a connection stays logged in after its token
// has expired, though the same token no longer logs anyone in.
func TestTokenExpiringAfterLogin(t *testing.T) {
	es := newES256(t, "")
	ts := startTokenServer(t, es)
	// Valid for ~3 s more: exp 57 s ago, and 60 s of leeway.
	minted := time.Now()
	token := es.mint(t, claims("alice", "exp", minted.Add(-57*time.Second).Unix()))
	alice := dialRaw(t, ts.token)
	mustWrite(t, alice, loginFrame(token))
	waitOnline(t, ts.s, "alice")
	bob := loginRaw(t, ts.s, ts.plain, "bob")

	expectOpen(t, alice, time.Until(minted.Add(5*time.Second))) // past exp + leeway
	ts.refused(t, token, "nobody")
	mustWrite(t, bob, transferFrame("bob", "alice", []byte("still here")))
	readExactly(t, alice, transferFrame("bob", "alice", []byte("still here")))
	mustWrite(t, alice, transferFrame(token, "bob", []byte("me too")))
	readExactly(t, bob, transferFrame("alice", "bob", []byte("me too")))
}

// Keys rotate by Apply: the file is read again, a new key is accepted from
// then on, a removed one no longer is, and connections that logged in with
// the removed key stay.
func TestTokenKeyRotation(t *testing.T) {
	oldKey, newKey := newES256(t, ""), newEdDSA(t, "")
	ts := startTokenServer(t, oldKey)
	oldConn := dialRaw(t, ts.token)
	mustWrite(t, oldConn, loginFrame(oldKey.mint(t, claims("old"))))
	waitOnline(t, ts.s, "old")

	ts.refused(t, newKey.mint(t, claims("new")), "new")
	writeKeys(t, ts.keys, oldKey, newKey)
	ts.refused(t, newKey.mint(t, claims("new")), "new") // the file alone changes nothing
	if err := ts.s.Apply(ts.cfg); err != nil {
		t.Fatal(err)
	}
	both := dialRaw(t, ts.token)
	mustWrite(t, both, loginFrame(newKey.mint(t, claims("new"))))
	waitOnline(t, ts.s, "new")

	writeKeys(t, ts.keys, newKey)
	if err := ts.s.Apply(ts.cfg); err != nil {
		t.Fatal(err)
	}
	ts.refused(t, oldKey.mint(t, claims("older")), "older")
	mustWrite(t, both, transferFrame("new", "old", []byte("hi")))
	readExactly(t, oldConn, transferFrame("new", "old", []byte("hi")))

	// A key file that no longer parses fails the Apply and keeps the keys.
	if err := os.WriteFile(ts.keys, []byte("hs256:short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.s.Apply(ts.cfg); err == nil || !strings.Contains(err.Error(), "jwt_key_file") {
		t.Fatalf("Apply with a broken key file: %v", err)
	}
	c := dialRaw(t, ts.token)
	mustWrite(t, c, loginFrame(newKey.mint(t, claims("newest"))))
	waitOnline(t, ts.s, "newest")
}

// A token listener on a server without [auth] keys refuses every login
// rather than letting anyone in.
func TestTokenWithoutKeys(t *testing.T) {
	cfg := configWith(listenerCfg("token", func(l *config.Listener) { l.ClientIDFromToken = true }))
	s := startServer(t, cfg)
	c := dialRaw(t, s.Addrs()["token"].String())
	mustWrite(t, c, loginFrame(newHS256(t).mint(t, claims("alice"))))
	waitClosed(t, c, 5*time.Second)
	eventually(t, "the refusal is counted", func() bool { return disconnects(s, ReasonProtocolError) == 1 })
	if _, ok := s.reg.Lookup([]byte("alice")); ok {
		t.Fatal("logged in without keys")
	}
}
