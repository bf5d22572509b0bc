package main

import (
	"bytes"
	"strings"
	"testing"
)

// One -h, whatever the mode, lists the flags of every mode.
func TestHelpListsEveryFlag(t *testing.T) {
	for _, mode := range []string{"throughput", "latency", "idle", "soak"} {
		var out, errb bytes.Buffer
		if code := run([]string{mode, "-h"}, &out, &errb); code != 0 {
			t.Fatalf("%s -h: exit %d", mode, code)
		}
		for _, flag := range []string{
			"-addr", "-ws", "-recv-addr", "-recv-ws", "-server-pid", "-warmup", "-duration", "-json", "-pairs", "-size",
			"-open-loop", "-closed-loop", "-window", "-settle", "-direct",
			"-rate", "-conns", "-heartbeat", "-parallel", "-seed", "-cpu-pid",
		} {
			if !strings.Contains(errb.String(), flag+" ") && !strings.Contains(errb.String(), flag+"\n") {
				t.Errorf("%s -h does not list %s", mode, flag)
			}
		}
	}
}

func TestUnknownMode(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"nonsense"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown mode "nonsense"`) {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// Flags that make no sense for a mode are refused with what to drop.
func TestRefusedCombinations(t *testing.T) {
	for _, args := range [][]string{
		{"throughput", "--direct", "--ws", "ws://127.0.0.1:1/relay"},
		{"throughput", "--direct", "--recv-addr", "127.0.0.1:1"},
		{"idle", "--recv-ws", "ws://127.0.0.1:1/relay", "--server-pid", "1"},
		{"latency", "--cpu-pid", "nats=1"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "drop --") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}

func TestCPUPIDFlag(t *testing.T) {
	for _, bad := range []string{"nats", "=1", "nats=x", "nats=0", "nats=-3"} {
		var out, errb bytes.Buffer
		if code := run([]string{"throughput", "--cpu-pid", bad}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "want NAME=PID") {
			t.Errorf("--cpu-pid %s: exit %d, stderr %q", bad, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"throughput", "--cpu-pid", "a=1", "--cpu-pid", "a=2"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "a given twice") {
		t.Errorf("a twice: exit %d, stderr %q", code, errb.String())
	}
}
