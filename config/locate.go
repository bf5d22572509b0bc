package config

import "strings"

// locate returns the 1-based line where the key at p is set in the TOML
// source, or, when it is not set there (an inherited value), the line of the
// table it belongs to; 0 when neither is found. The TOML decoder does not
// expose key positions, so this reads the source the way a person would:
// table headers and "key = value" lines.
func locate(src string, p path) int {
	line, _ := find(src, p)
	return line
}

// find is locate that also says whether the key itself was found.
func find(src string, p path) (line int, found bool) {
	if len(p.keys) == 0 {
		return 0, false
	}
	table := strings.Join(p.keys[:len(p.keys)-1], ".")
	last := p.keys[len(p.keys)-1]
	whole := strings.Join(p.keys, ".")

	current, instance, tableLine := "", -1, 0
	for i, line := range strings.Split(src, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			header, _, _ := strings.Cut(t, "]")
			current = strings.TrimSpace(strings.TrimLeft(header, "["))
			if current == whole { // the key names a table, e.g. an unknown [section]
				return i + 1, true
			}
			if current == table {
				instance++
				if p.index < 0 || instance == p.index {
					tableLine = i + 1
				}
			}
			continue
		}
		if current != table || (p.index >= 0 && instance != p.index) {
			continue
		}
		if k, _, ok := strings.Cut(t, "="); ok && strings.Trim(strings.TrimSpace(k), `"'`) == last {
			return i + 1, true
		}
	}
	return tableLine, false
}

// instance returns which table of the array of tables keys[0] sets the
// rest of keys, or -1: the decoder reports unknown keys of [[listener]]
// without saying in which one.
func instance(src string, keys []string) int {
	n := strings.Count(src, "[[") // at least the number of tables: enough to stop
	for i := 0; i < n; i++ {
		if _, ok := find(src, path{keys: keys, index: i}); ok {
			return i
		}
	}
	return -1
}
