package metrics

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relayd/relayd/internal/server"
)

// Endpoints are what the admin handler serves besides /metrics and
// /healthz. Every function is called per request, so a reload that changes
// what they report applies to the next request.
type Endpoints struct {
	Ready   func() bool                         // /readyz: 200 while true, else 503
	Clients func(id string) []server.ClientInfo // GET /clients: Server.Clients; nil: 404
	Kick    func(id string) bool                // POST /clients/kick: Server.Kick; nil: 404
	Pprof   func() bool                         // /debug/pprof/ is served while true; nil: never
}

// clientJSON is one element of GET /clients. Exactly one of ID and
// IDBase64 is set: JSON strings are UTF-8, and encoding/json would replace
// the bytes of a binary ClientID with U+FFFD, so such IDs travel in base64.
type clientJSON struct {
	ID          *string `json:"id,omitempty"`
	IDBase64    *string `json:"id_base64,omitempty"`
	Listener    string  `json:"listener"`
	Remote      string  `json:"remote"`
	Since       string  `json:"since"`
	FramesIn    uint64  `json:"frames_in"`
	BytesIn     uint64  `json:"bytes_in"`
	FramesOut   uint64  `json:"frames_out"`
	BytesOut    uint64  `json:"bytes_out"`
	QueuedBytes int     `json:"queued_bytes"`
}

// idJSON is the id or id_base64 field of a JSON body.
type idJSON struct {
	ID       *string `json:"id,omitempty"`
	IDBase64 *string `json:"id_base64,omitempty"`
}

func encodeID(id string) idJSON {
	if utf8.ValidString(id) {
		return idJSON{ID: &id}
	}
	b := base64.StdEncoding.EncodeToString([]byte(id))
	return idJSON{IDBase64: &b}
}

func toJSON(c server.ClientInfo) clientJSON {
	id := encodeID(c.ID)
	return clientJSON{
		ID:       id.ID,
		IDBase64: id.IDBase64,
		Listener: c.Listener,
		Remote:   c.Remote,
		// Whole seconds in UTC: what jq's fromdate and most tools parse.
		Since:       c.Since.UTC().Format(time.RFC3339),
		FramesIn:    c.FramesIn,
		BytesIn:     c.BytesIn,
		FramesOut:   c.FramesOut,
		BytesOut:    c.BytesOut,
		QueuedBytes: c.Queued,
	}
}

// errNoID is a request that names no client.
var errNoID = errors.New("name the client with ?id=ID (URL-encoded) or ?id_base64=BASE64")

// requestedID returns the ClientID a request names with ?id= or
// ?id_base64=, and whether it names one at all.
func requestedID(r *http.Request) (string, bool, error) {
	q := r.URL.Query()
	_, hasID := q["id"]
	_, hasB64 := q["id_base64"]
	switch {
	case hasID && hasB64:
		return "", false, errors.New("give either id or id_base64, not both")
	case hasID:
		id := q.Get("id")
		if err := checkID(id); err != nil {
			return "", false, err
		}
		return id, true, nil
	case hasB64:
		id, err := decodeBase64ID(q.Get("id_base64"))
		if err == nil {
			err = checkID(id)
		}
		if err != nil {
			return "", false, err
		}
		return id, true, nil
	}
	return "", false, nil
}

// checkID refuses what can never be a ClientID (SPEC §2: 1 to 255 bytes).
func checkID(id string) error {
	if id == "" || len(id) > 255 {
		return errors.New("a client ID is 1 to 255 bytes")
	}
	return nil
}

// decodeBase64ID decodes id_base64: standard base64 as GET /clients gives
// it, padding optional. An unescaped "+" in a query string arrives as a
// space, which base64 never contains, so it is read back as "+"; the URL
// alphabet is accepted too.
func decodeBase64ID(s string) (string, error) {
	s = strings.TrimRight(strings.ReplaceAll(s, " ", "+"), "=")
	s = strings.NewReplacer("-", "+", "_", "/").Replace(s)
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return "", errors.New("id_base64 is not base64: " + err.Error())
	}
	return string(b), nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only plain strings and numbers: cannot happen
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}

// notHere is the 404 for a client that is not logged in on this node.
func notHere(w http.ResponseWriter, id string) {
	writeError(w, http.StatusNotFound, "client "+strconv.Quote(id)+" is not logged in on this node")
}

// clients serves GET /clients: every logged-in client as a JSON array, or
// with ?id= (or ?id_base64=) that one client as a JSON object.
func (e Endpoints) clients(w http.ResponseWriter, r *http.Request) {
	id, one, err := requestedID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	list := e.Clients(id)
	if one {
		if len(list) == 0 {
			notHere(w, id)
			return
		}
		writeJSON(w, http.StatusOK, toJSON(list[0]))
		return
	}
	out := make([]clientJSON, len(list)) // [] rather than null when nobody is logged in
	for i, c := range list {
		out[i] = toJSON(c)
	}
	writeJSON(w, http.StatusOK, out)
}

// kick serves POST /clients/kick?id=.
func (e Endpoints) kick(w http.ResponseWriter, r *http.Request) {
	id, ok, err := requestedID(r)
	if err == nil && !ok {
		err = errNoID
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !e.Kick(id) {
		notHere(w, id)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		idJSON
		Kicked bool `json:"kicked"`
	}{encodeID(id), true})
}

// pprofHandler serves Go's profiler while on reports true, else 404, so
// that a reload turns it on and off without a new listener.
func pprofHandler(on func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // also the named profiles: heap, goroutine, ...
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol) // what go tool pprof sends
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if on == nil || !on() {
			http.NotFound(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
