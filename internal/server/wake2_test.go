package server

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
)

func TestWakeWSReceiver(t *testing.T) {
	s, tcpAddr, wsURL := startWS(t, nil)
	for i := range 300 {
		web := dialWS(t, wsURL)
		sendWS(t, web, loginFrame(fmt.Sprintf("web%d", i)))
		tcp, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		tcp.Write(loginFrame(fmt.Sprintf("tcp%d", i)))
		ok := false
		for try := 0; try < 30 && !ok; try++ {
			tcp.Write(transferFrame(fmt.Sprintf("tcp%d", i), fmt.Sprintf("web%d", i), []byte("probe")))
			_ = web.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := wsutil.ReadServerBinary(web); err == nil {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("round %d: the web client never got a probe; stats %+v", i, s.Stats().Frames)
		}
		tcp.Close()
		web.Close()
	}
}
