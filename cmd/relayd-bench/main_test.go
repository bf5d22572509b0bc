package main

import (
	"bytes"
	"strings"
	"testing"
)

// Each mode's -h lists the flags that mode reads, and only those.
func TestModeHelpListsItsFlags(t *testing.T) {
	common := []string{"-addr", "-server-pid", "-duration", "-json"}
	for _, tc := range []struct {
		mode      string
		has, lack []string
	}{
		{"throughput", []string{"-warmup", "-pairs", "-size", "-window", "-direct"}, []string{"-rate", "-conns", "-heartbeat", "-parallel"}},
		{"latency", []string{"-warmup", "-pairs", "-size", "-rate"}, []string{"-window", "-direct", "-conns", "-heartbeat", "-parallel"}},
		{"idle", []string{"-conns", "-heartbeat", "-parallel"}, []string{"-warmup", "-pairs", "-size", "-window", "-direct", "-rate"}},
	} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{tc.mode, "-h"}, &stdout, &stderr); code != 0 {
			t.Errorf("%s -h: exit %d", tc.mode, code)
		}
		help := stderr.String()
		for _, f := range append(common, tc.has...) {
			if !strings.Contains(help, "  "+f+" ") && !strings.Contains(help, "  "+f+"\n") {
				t.Errorf("%s -h does not list %s:\n%s", tc.mode, f, help)
			}
		}
		for _, f := range tc.lack {
			if strings.Contains(help, "  "+f) {
				t.Errorf("%s -h lists %s, which %s does not read:\n%s", tc.mode, f, tc.mode, help)
			}
		}
	}
}

// relayd-bench -h lists every mode with its flags.
func TestTopLevelHelpListsEveryMode(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	help := stderr.String()
	for _, want := range []string{"throughput flags:", "latency flags:", "idle flags:", "  -window", "  -rate", "  -conns"} {
		if !strings.Contains(help, want) {
			t.Errorf("-h lacks %q:\n%s", want, help)
		}
	}
}

// A flag of another mode is an error, not silently ignored.
func TestFlagOfAnotherModeIsAnError(t *testing.T) {
	for _, args := range [][]string{
		{"throughput", "--conns", "5"},
		{"idle", "--pairs", "2"},
		{"latency", "--direct"},
		{"throughput", "extra"},
		{"nosuchmode"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}
