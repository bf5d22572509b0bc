package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// relayd.toml.example documents every key of the schema, and its
// commented-out optional parts are valid once uncommented.
func TestExampleDocumentsEveryKey(t *testing.T) {
	stubHostname(t, "node", nil)
	b, err := os.ReadFile("../relayd.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	commented := regexp.MustCompile(`(?m)^# (\[|[a-z_]+ = )`)
	all := commented.ReplaceAllString(string(b), "$1")
	c, err := Parse("relayd.toml.example", []byte(all))
	if err != nil {
		t.Fatalf("the example with every part uncommented: %v", err)
	}
	if c.Auth == nil || c.Cluster == nil || c.Admin == nil || len(c.Listeners) < 3 {
		t.Fatalf("uncommenting left out sections: %+v", c)
	}
	for _, table := range [][]string{{"server"}, {"log"}, {"admin"}, {"reload"}, {"limits"}, {"listener"}, {"auth"}, {"cluster"}} {
		for _, k := range knownKeys(table) {
			if !regexp.MustCompile(`(?m)^` + k + ` = `).MatchString(all) {
				t.Errorf("[%s] %s is not in relayd.toml.example", strings.Join(table, "."), k)
			}
		}
	}
}
