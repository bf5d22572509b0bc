package examples

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/auth"
)

// minttoken's keys and tokens are what relayd's verifier accepts, for each
// algorithm: -gen writes a key pair, the token minted with the private half
// verifies against the public half as a jwt_key_file.
func TestMintToken(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "minttoken")
	if out, err := exec.Command("go", "build", "-o", bin, "./minttoken").CombinedOutput(); err != nil {
		t.Fatalf("build minttoken: %v: %s", err, out)
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).Output()
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			err = errors.New(strings.TrimSpace(string(ee.Stderr)))
		}
		return strings.TrimSpace(string(out)), err
	}
	for _, alg := range []string{"es256", "ed25519", "hs256"} {
		t.Run(alg, func(t *testing.T) {
			out, err := run("-gen", alg, "-out", dir)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := auth.LoadKeys(filepath.Join(dir, "jwt-"+alg+".pub"))
			if err != nil {
				t.Fatal(err)
			}
			_, kid, _ := strings.Cut(out, "kid: ")
			key := filepath.Join(dir, "jwt-"+alg+".key")
			for _, tc := range []struct {
				name     string
				args     []string
				audience string
				want     error
			}{
				{"plain", nil, "", nil},
				{"audience", []string{"-aud", "relay"}, "relay", nil},
				{"printed kid and iat", []string{"-kid", kid, "-iat"}, "", nil},
				{"wrong kid", []string{"-kid", "other"}, "", auth.ErrUnknownKey},
				{"expired", []string{"-ttl", "-2m"}, "", auth.ErrExpired},
			} {
				tok, err := run(append([]string{"-key", key, "-sub", "alice"}, tc.args...)...)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if sub, err := keys.Verify([]byte(tok), tc.audience, time.Now()); err != tc.want || (err == nil && sub != "alice") {
					t.Errorf("%s: Verify = %q, %v; want %v", tc.name, sub, err, tc.want)
				}
			}
			// A second -gen must not overwrite the key in use.
			if _, err := run("-gen", alg, "-out", dir); err == nil {
				t.Error("-gen overwrote an existing key")
			}
		})
	}
	if _, err := run("-key", filepath.Join(dir, "jwt-hs256.key"), "-sub", strings.Repeat("a", 200)); err == nil || !strings.Contains(err.Error(), "over the 255") {
		t.Errorf("an oversized token: %v", err)
	}
}
