package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/relayd/relayd/internal/server"
)

// Every metric the shipped Grafana dashboard queries is one relayd exports.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("../../examples/grafana/relayd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}

	reg := NewRegistry(Sources{
		Server:  func() server.Stats { return server.Stats{Listeners: []server.ListenerStats{{Name: "plain"}}} },
		Reloads: func() ReloadStats { return ReloadStats{} },
	})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		exported[f.GetName()] = true
	}
	name := regexp.MustCompile(`\b(relayd|process|go)_[a-z_]+\b`)
	queried := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				queried++
				if !exported[m] {
					t.Errorf("panel %q queries %s, which relayd does not export", p.Title, m)
				}
			}
		}
	}
	if queried < 10 {
		t.Fatalf("only %d metric references found", queried)
	}
}
