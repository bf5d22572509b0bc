package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/internal/relaytest"
	"github.com/relayd/relayd/internal/server"
	"github.com/relayd/relayd/internal/syncbuf"
	"github.com/relayd/relayd/internal/wait"
)

var binary string

func TestMain(m *testing.M) {
	var dir string
	binary, dir = relaytest.BuildBinary("relayd-client")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startRelay returns a relay and its port.
func startRelay(t *testing.T) (*server.Server, string) {
	s, addr := relaytest.Start(t, nil)
	_, port, _ := strings.Cut(addr, "127.0.0.1:")
	return s, port
}

// dial logs id in to the relay on port, for the rest of the test.
func dial(t *testing.T, port, id string) *client.Client {
	t.Helper()
	c, err := client.Dial(t.Context(), "127.0.0.1:"+port, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitClients(t *testing.T, s *server.Server, n int) {
	t.Helper()
	wait.For(t, 10*time.Second, fmt.Sprintf("never saw %d logged-in clients", n), func() bool { return s.Stats().Clients >= n })
}

func TestLinesAreSentAndFramesPrinted(t *testing.T) {
	s, port := startRelay(t)
	bob := dial(t, port, "bob")
	waitClients(t, s, 1)

	// alice reads stdin from a pipe we control, so she stays up while bob answers.
	cmd := exec.Command(binary, "--port", port, "--client-id", "alice", "--to-client-id", "bob")
	stdin, _ := cmd.StdinPipe()
	var stdout, stderr syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "hello bob\nsecond line\n")
	_ = bob.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []string{"hello bob", "second line"} {
		m, err := bob.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if string(m.From) != "alice" || string(m.Payload) != want {
			t.Fatalf("bob got %q from %q, want %q", m.Payload, m.From, want)
		}
	}
	// Non-printable bytes come out escaped, one frame per line.
	if err := bob.Send("alice", []byte("tab\there\nnewline \x00\xff\\ é")); err != nil {
		t.Fatal(err)
	}
	if err := bob.Send("alice", []byte("bye")); err != nil {
		t.Fatal(err)
	}
	// stdout is written by the child; poll for it (the check below says what came instead).
	wait.For(t, 10*time.Second, "alice never printed bob's last frame", func() bool {
		return strings.Contains(stdout.String(), "bob: bye\n")
	})
	io.WriteString(stdin, "/quit\nnever sent\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr: %s", err, stderr.String())
	}
	want := "bob: tab\\there\\nnewline \\x00\\xff\\\\ é\nbob: bye\n"
	if stdout.String() != want {
		t.Fatalf("stdout = %q, want %q", stdout.String(), want)
	}
	_ = bob.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if m, err := bob.Recv(); err == nil {
		t.Fatalf("a line after /quit was sent: %q", m.Payload)
	}
}

// Everything piped in is sent before the client exits at end of stdin.
func TestEndOfStdinSendsEverything(t *testing.T) {
	s, port := startRelay(t)
	bob := dial(t, port, "bob")
	waitClients(t, s, 1)

	var in strings.Builder
	const lines = 2000
	for i := 0; i < lines; i++ {
		in.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	cmd := exec.Command(binary, "--port", port, "--client-id", "alice", "--to-client-id", "bob")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("exit: %v: %s", err, out)
	}
	_ = bob.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < lines; i++ {
		m, err := bob.Recv()
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if want := "line " + strconv.Itoa(i); string(m.Payload) != want {
			t.Fatalf("got %q, want %q", m.Payload, want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--client-id", "a"},    // no destination
		{"--to-client-id", "b"}, // no ID
		{"--client-id", "a", "--to-client-id", "b", "extra"},
		{"--client-id", "a", "--to-client-id", "b", "--cert", "c.pem"}, // cert without key
	} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit status 2 (%s)", args, err, out)
		}
	}
	out, err := exec.Command(binary, "--port", "1", "--client-id", "a", "--to-client-id", "b").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "connect") {
		t.Errorf("unreachable server: %v: %s", err, out)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":      "plain text",
		"ünïcödé ✓":       "ünïcödé ✓",
		"a\nb\rc\td":      `a\nb\rc\td`,
		"\x00\x1b[31m":    `\x00\x1b[31m`,
		"\xff\xfe":        `\xff\xfe`,
		`back\slash`:      `back\\slash`,
		"\u200b zero-wid": `\xe2\x80\x8b zero-wid`,
	} {
		if got := string(appendEscaped(nil, []byte(in))); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
