package packaging

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
)

// The Containerfile says what the image promises; this part needs no
// container runtime.
func TestContainerfile(t *testing.T) {
	cf := readFile(t, "../Containerfile")
	final := cf[strings.LastIndex(cf, "\nFROM "):]
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^FROM scratch$`),
		regexp.MustCompile(`(?m)^USER [1-9][0-9]*:[1-9][0-9]*$`), // numeric: scratch has no passwd
		regexp.MustCompile(`(?m)^EXPOSE 33333 9333$`),
		regexp.MustCompile(`(?m)^VOLUME \["/etc/relayd"\]$`),
		regexp.MustCompile(`(?m)^COPY .*relayd\.toml /etc/relayd/relayd\.toml$`),
		regexp.MustCompile(`(?m)^# No HEALTHCHECK: .*\n(#.*\n)*# .*/healthz`),
	} {
		if !want.MatchString(final) {
			t.Errorf("the final stage of the Containerfile has no %s", want)
		}
	}
	if !strings.Contains(cf, "CGO_ENABLED=0") {
		t.Error("the Containerfile does not build with CGO_ENABLED=0 (a static binary is all scratch can run)")
	}
	if regexp.MustCompile(`(?m)^HEALTHCHECK`).MatchString(cf) {
		t.Error("HEALTHCHECK cannot work on scratch (no shell, no curl)")
	}
}

// podman runs containers with the flags in run; where the default runtime
// cannot set resource limits (sandboxes that refuse setrlimit and mix
// cgroup versions, as this project's machines do), runc with limits no
// higher than the test's own works.
type podman struct {
	global []string // before the subcommand
	limits []string // for build and run
}

func (p podman) cmd(ctx context.Context, sub string, args ...string) *exec.Cmd {
	all := append(append([]string{}, p.global...), sub)
	if sub == "build" || sub == "run" {
		all = append(all, p.limits...)
	}
	return exec.CommandContext(ctx, "podman", append(all, args...)...)
}

func (p podman) run(t *testing.T, sub string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := p.cmd(ctx, sub, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s %s: %v\n%s", sub, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// goImage is a Go toolchain image made from this machine's own Go, standing
// in for the Containerfile's default GO_IMAGE: no registry is reachable
// here. Its build stage runs no shell, so a toolchain is all it needs.
func goImage(t *testing.T) string {
	t.Helper()
	image := "localhost/relayd-test-go:" + runtime.Version()
	if exec.Command("podman", "image", "exists", image).Run() == nil {
		return image
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(out))
	cf := "FROM scratch\nCOPY . /usr/local/go\n" +
		"ENV PATH=/usr/local/go/bin HOME=/root GOPATH=/root/go GOCACHE=/root/cache TMPDIR=/root GOPROXY=off GOTOOLCHAIN=local\n" +
		"WORKDIR /root\n"
	cmd := exec.Command("podman", "build", "-q", "-t", image, "-f", "-", goroot)
	cmd.Stdin = strings.NewReader(cf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("a Go image from %s: %v\n%s", goroot, err, out)
	}
	return image
}

// containers returns how to run containers here, or skips the test with
// the reason they cannot run.
func containers(t *testing.T) podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("container test needs podman (apt-get install podman runc)")
	}
	if os.Geteuid() != 0 {
		t.Skip("container test needs root (rootless podman needs subuids this machine may not have)")
	}
	image := goImage(t)
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	tries := []podman{
		{},
		{global: []string{"--runtime", "runc"}, limits: []string{
			"--ulimit", fmt.Sprintf("nofile=%d:%d", lim.Cur, lim.Cur), "--ulimit", "nproc=4096:4096"}},
	}
	var errs []string
	for _, p := range tries {
		if len(p.global) > 0 {
			if _, err := exec.LookPath("runc"); err != nil {
				errs = append(errs, "runc: not installed (apt-get install runc)")
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := p.cmd(ctx, "run", "--rm", "--network", "none", image, "go", "version").CombinedOutput()
		cancel()
		if err == nil {
			t.Logf("podman %s runs containers", strings.Join(append(p.global, p.limits...), " "))
			return p
		}
		errs = append(errs, fmt.Sprintf("podman %s: %s", strings.Join(p.global, " "), strings.TrimSpace(string(out))))
	}
	t.Skipf("podman cannot run containers on this machine:\n%s", strings.Join(errs, "\n"))
	return podman{}
}

// The image builds from the Containerfile, runs relayd as a non-root user
// with its default config, relays frames, answers the health endpoints and
// stops cleanly.
func TestContainerImage(t *testing.T) {
	p := containers(t)
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "mod", "download").CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	const image = "localhost/relayd-containerfile-test:latest"
	// The module cache is lent read-only and the network withheld: the
	// build must need nothing but this checkout and its modules.
	p.run(t, "build", "--network", "none", "--layers=false",
		"-v", strings.TrimSpace(string(modcache))+":/root/go/pkg/mod:ro",
		"--build-arg", "GO_IMAGE="+goImage(t), "--build-arg", "VERSION=9.9.9-container",
		"-t", image, "-f", "../Containerfile", "..")
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", image).Run() })

	var inspect []struct {
		Config struct {
			User         string
			ExposedPorts map[string]struct{}
			Volumes      map[string]struct{}
		}
	}
	if err := json.Unmarshal([]byte(p.run(t, "image", "inspect", image)), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	cfg := inspect[0].Config
	if cfg.User != "65532:65532" {
		t.Errorf("User = %q", cfg.User)
	}
	for _, port := range []string{"33333/tcp", "9333/tcp"} {
		if _, ok := cfg.ExposedPorts[port]; !ok {
			t.Errorf("port %s not exposed: %v", port, cfg.ExposedPorts)
		}
	}
	if _, ok := cfg.Volumes["/etc/relayd"]; !ok {
		t.Errorf("/etc/relayd is not a volume: %v", cfg.Volumes)
	}
	if v := p.run(t, "run", "--rm", "--network", "none", image, "--version"); !strings.HasPrefix(v, "relayd 9.9.9-container ") {
		t.Errorf("--version = %q", v)
	}

	name := fmt.Sprintf("relayd-test-%d", os.Getpid())
	p.run(t, "run", "-d", "--name", name, "-p", "127.0.0.1::33333", "-p", "127.0.0.1::9333", image)
	t.Cleanup(func() { exec.Command("podman", "rm", "-f", name).Run() })
	hostPort := func(port string) string {
		out := p.run(t, "port", name, port+"/tcp")
		_, hp, err := net.SplitHostPort(strings.Fields(out)[0])
		if err != nil {
			t.Fatalf("podman port %s: %q", port, out)
		}
		return hp
	}
	relay, admin := "127.0.0.1:"+hostPort("33333"), "http://127.0.0.1:"+hostPort("9333")

	// Ready once the listener is bound: what an orchestrator probes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered 200 (%v); logs:\n%s", err, p.run(t, "logs", name))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp, err := http.Get(admin + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, relay, "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send("alice", []byte("through the container")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := c.Recv()
	if err != nil || string(m.Payload) != "through the container" {
		t.Fatalf("recv: %q, %v", m.Payload, err)
	}

	// SIGTERM (podman stop) shuts relayd down gracefully: exit 0.
	p.run(t, "stop", "-t", "15", name)
	code := p.run(t, "inspect", name, "--format", "{{.State.ExitCode}}")
	if n, _ := strconv.Atoi(code); code == "" || n != 0 {
		t.Errorf("exit code after podman stop: %s; logs:\n%s", code, p.run(t, "logs", name))
	}
}
