package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// Parse reads operator-written text, and its error paths (locate,
// suggestions, collisions) do their own string handling: whatever the
// input, it returns a configuration or an *Error, never panics.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"../relayd.toml.example", "../examples/tls.toml", "../examples/mtls.toml", "../examples/multi-listener.toml"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("[[listener]]\nname = \"a\"\naddress = \"0.0.0.0:1\"\n[[listener]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n")
	f.Add("[[listener]]\ntransport = \"websocket\"\nws_origins = [\"*.x\"]\nws_trusted_proxies = [\"::1\"]\nrate_brust = 1\n")
	f.Add("[cluster]\nnats_urls = [\"nats://u:p@h:1\"]\n[auth]\njwt_key_file = \"k\"\n")
	f.Add("[[ listener ]]\n[limits.x]\n\"quoted.key\" = 1\n")
	f.Fuzz(func(t *testing.T, src string) {
		c, err := Parse("fuzz.toml", []byte(src))
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error %q (%T) is not a *config.Error naming the file", err, err)
			}
			return
		}
		if len(c.Listeners) == 0 {
			t.Fatal("a valid configuration without listeners")
		}
	})
}
