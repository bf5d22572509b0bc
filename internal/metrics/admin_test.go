package metrics

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/relayd/relayd/internal/testcert"
)

// webConfig writes a CA-signed server certificate and a web config file
// with one user to a temporary directory, and returns the file and a client
// that trusts the CA.
func webConfig(t *testing.T, user, password string) (string, *http.Client) {
	t.Helper()
	dir := t.TempDir()
	ca, err := testcert.NewCA("admin test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server("relayd")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := leaf.Write(dir, "server"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "web.yml")
	writeUsers(t, path, user, password)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	c := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}},
	}
	t.Cleanup(c.CloseIdleConnections)
	return path, c
}

// writeUsers (re)writes the web config with TLS from server.pem beside it
// (relative paths are the file's directory's) and one basic-auth user.
func writeUsers(t *testing.T, path, user, password string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	body := "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n" +
		"basic_auth_users:\n  " + user + ": " + string(hash) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func listen(t *testing.T, webConfigFile string) *Admin {
	t.Helper()
	h := Handler(prometheus.NewRegistry(), Endpoints{Ready: func() bool { return true }})
	a, err := Listen("127.0.0.1:0", webConfigFile, h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return a
}

func get(t *testing.T, c *http.Client, url, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAdminPlain(t *testing.T) {
	a := listen(t, "")
	code, body := get(t, http.DefaultClient, "http://"+a.Addr().String()+"/healthz", "", "")
	if code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
}

func TestAdminTLSBasicAuth(t *testing.T) {
	path, c := webConfig(t, "prometheus", "s3cret")
	a := listen(t, path)
	url := "https://" + a.Addr().String() + "/healthz"
	for _, tc := range []struct {
		name, user, password string
		want                 int
	}{
		{"right password", "prometheus", "s3cret", 200},
		{"wrong password", "prometheus", "guess", 401},
		{"unknown user", "root", "s3cret", 401},
		{"no credentials", "", "", 401},
	} {
		if code, _ := get(t, c, url, tc.user, tc.password); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}

	// Plain HTTP on the TLS port gets nothing but Go's 400 "client sent an
	// HTTP request to an HTTPS server".
	code, body := get(t, http.DefaultClient, "http://"+a.Addr().String()+"/healthz", "prometheus", "s3cret")
	if code != 400 || strings.Contains(body, "ok") {
		t.Errorf("plain HTTP to the TLS admin: %d %q", code, body)
	}
	// A client that does not trust the certificate does not get through either.
	if _, err := http.Get(url); err == nil {
		t.Error("untrusted certificate accepted")
	}

	// The users are re-read per request: a changed password applies at once.
	writeUsers(t, path, "prometheus", "n3w")
	if code, _ := get(t, c, url, "prometheus", "n3w"); code != 200 {
		t.Errorf("new password after rewrite: %d", code)
	}
	if code, _ := get(t, c, url, "prometheus", "s3cret"); code != 401 {
		t.Errorf("old password after rewrite: %d", code)
	}
}

func TestAdminBadWebConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"unknown key", "tls_server_config:\n  cert_fil: x.pem\n", "cert_fil"},
		{"missing certificate", "tls_server_config:\n  cert_file: none.pem\n  key_file: none-key.pem\n", "none.pem"},
		{"key without cert", "tls_server_config:\n  key_file: k.pem\n", "missing one of cert or cert_file"},
		{"not bcrypt", "basic_auth_users:\n  admin: plaintext\n", "hash"},
		{"not YAML", "{{{", "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yml")
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			err := ValidateWebConfig(path)
			if err == nil || !strings.Contains(err.Error(), "web_config_file "+path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ValidateWebConfig: %v (want the path and %q)", err, tc.want)
			}
			a, err := Listen("127.0.0.1:0", path, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
			if err == nil {
				a.Close(context.Background())
				t.Fatal("Listen accepted the file")
			}
		})
	}
	if err := ValidateWebConfig(filepath.Join(dir, "missing.yml")); err == nil || !strings.Contains(err.Error(), "missing.yml") {
		t.Fatalf("missing file: %v", err)
	}
	if err := ValidateWebConfig(""); err != nil {
		t.Fatalf("no file: %v", err)
	}
}

// Closing at once, before the server goroutine got going, neither races nor
// leaves the socket bound.
func TestAdminCloseAtOnce(t *testing.T) {
	path, _ := webConfig(t, "u", "p")
	for _, file := range []string{"", path} {
		for range 5 {
			a, err := Listen("127.0.0.1:0", file, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			addr := a.Addr().String()
			if err := a.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("address still bound after Close: %v", err)
			}
			ln.Close()
		}
	}
}

// A taken address is an error from Listen itself, not a log line later.
func TestAdminAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path, _ := webConfig(t, "u", "p")
	for _, file := range []string{"", path} {
		_, err := Listen(ln.Addr().String(), file, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "admin: listen on "+ln.Addr().String()) {
			t.Fatalf("web config %q: %v", file, err)
		}
	}
}
