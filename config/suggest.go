package config

import (
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// unknownKey is the error for a key the schema does not have, with the
// closest key of the same table when one is close enough to be a typo.
func (s *source) unknownKey(k toml.Key) *Error {
	p := path{keys: k, index: -1}
	if len(k) >= 2 {
		if _, many := arrayTables[k[0]]; many {
			p.index = instance(s.text, k)
		}
	}
	msg := "unknown key"
	if sug := suggest(k[len(k)-1], knownKeys(k[:len(k)-1])); sug != "" {
		msg += " (did you mean " + sug + "?)"
	}
	return s.errorf(p, "%s", msg)
}

// arrayTables are the keys that hold arrays of tables ([[listener]]).
var arrayTables = map[string]struct{}{"listener": {}}

// knownKeys lists the keys the schema accepts in table, read from the toml
// tags of the structs the document decodes into, so that it never falls
// behind the schema.
func knownKeys(table []string) []string {
	t := reflect.TypeOf(file{})
	for _, name := range table {
		f, ok := tomlFields(t)[name]
		if !ok {
			return nil
		}
		t = f
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
	}
	fields := tomlFields(t)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// tomlFields maps the toml keys of struct type t, embedded structs
// included, to their types.
func tomlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case f.Anonymous && name == "":
			for k, v := range tomlFields(f.Type) {
				out[k] = v
			}
		case !f.IsExported() || name == "-" || name == "":
		default:
			out[name] = f.Type
		}
	}
	return out
}

// suggest returns the candidate that name is most likely a typo of: the
// nearest within two edits (and within half of name, so that short names
// do not match everything), or else the only candidate name is a prefix
// of; "" when none is.
func suggest(name string, candidates []string) string {
	best, bestD, tie := "", 3, false
	for _, c := range candidates {
		switch d := editDistance(name, c); {
		case d < bestD:
			best, bestD, tie = c, d, false
		case d == bestD:
			tie = true
		}
	}
	if best != "" && !tie && 2*bestD <= len(name) {
		return best
	}
	var prefixed []string
	for _, c := range candidates {
		if len(name) >= 3 && strings.HasPrefix(c, name) {
			prefixed = append(prefixed, c)
		}
	}
	if len(prefixed) == 1 {
		return prefixed[0]
	}
	return ""
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// bytes each cost one.
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j]; three rows suffice.
	prev2, prev, cur := make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
