// Command changelog turns CHANGELOG.md (Keep a Changelog) into a Debian
// package changelog, so that the package's history is written once:
//
//	go run ./packaging/changelog -version 0.1.60 -date "$(git log -1 --format=%cD)" <CHANGELOG.md
//
// Each released section becomes an entry with its version and date; the
// Unreleased section becomes the newest entry, with -version and -date,
// unless -version is that of the newest release (a build of the release
// itself). Every entry has Debian revision 1, the release nfpm.yaml gives.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
)

const maintainer = "relayd maintainers <relayd@example.com>"

// width bounds a changelog line (lintian: debian-changelog-line-too-long).
const width = 78

type section struct {
	version string // "" for Unreleased
	date    time.Time
	groups  []group
}

type group struct {
	kind  string // Added, Changed, Fixed, ...
	items []string
}

var (
	versionHead = regexp.MustCompile(`^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?\s*$`)
	link        = regexp.MustCompile(`\[([^\]]+)\]\([^)]+\)`)
)

func main() {
	version := flag.String("version", "", "upstream `version` of this build, e.g. 0.1.60 (required)")
	date := flag.String("date", "", "RFC 2822 `date` of this build (default: now)")
	flag.Parse()
	if *version == "" {
		fmt.Fprintln(os.Stderr, "changelog: -version is required")
		os.Exit(2)
	}
	when := time.Now().UTC()
	if *date != "" {
		var err error
		if when, err = time.Parse("Mon, 2 Jan 2006 15:04:05 -0700", *date); err != nil {
			fmt.Fprintf(os.Stderr, "changelog: -date %q: want RFC 2822, as git log --format=%%cD prints\n", *date)
			os.Exit(2)
		}
	}
	sections, err := parse(os.Stdin)
	if err == nil {
		err = write(os.Stdout, sections, *version, when)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "changelog: %v\n", err)
		os.Exit(1)
	}
}

// parse reads the version sections of a Keep a Changelog file.
func parse(r io.Reader) ([]section, error) {
	var (
		out  []section
		cur  *section
		item *string
	)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			m := versionHead.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("CHANGELOG.md:%d: want \"## [VERSION] - YYYY-MM-DD\" or \"## [Unreleased]\", got %q", n, line)
			}
			s := section{}
			if !strings.EqualFold(m[1], "Unreleased") {
				if m[2] == "" {
					return nil, fmt.Errorf("CHANGELOG.md:%d: release %s has no date", n, m[1])
				}
				s.version = m[1]
				s.date, _ = time.Parse(time.DateOnly, m[2])
			}
			out = append(out, s)
			cur, item = &out[len(out)-1], nil
		case cur == nil:
		case strings.HasPrefix(line, "### "):
			cur.groups = append(cur.groups, group{kind: strings.TrimSpace(line[4:])})
			item = nil
		case strings.HasPrefix(line, "- ") && len(cur.groups) > 0:
			g := &cur.groups[len(cur.groups)-1]
			g.items = append(g.items, strings.TrimSpace(line[2:]))
			item = &g.items[len(g.items)-1]
		case strings.HasPrefix(line, "  ") && item != nil && strings.TrimSpace(line) != "":
			*item += " " + strings.TrimSpace(line)
		case strings.HasPrefix(line, "["):
			// link reference definitions end the file
		case strings.TrimSpace(line) == "":
			item = nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no version sections (## [VERSION] - DATE)")
	}
	return out, nil
}

func write(w io.Writer, sections []section, version string, when time.Time) error {
	bw := bufio.NewWriter(w)
	first := true
	for _, s := range sections {
		v, d := s.version, s.date
		if v == "" {
			if len(sections) > 1 && sections[1].version == version {
				continue // this build is the newest release: no unreleased entry
			}
			v, d = version, when
		}
		if len(s.groups) == 0 {
			continue
		}
		if !first {
			bw.WriteString("\n")
		}
		first = false
		fmt.Fprintf(bw, "relayd (%s-1) unstable; urgency=medium\n\n", v)
		for _, g := range s.groups {
			for _, it := range g.items {
				wrap(bw, g.kind+": "+plain(it))
			}
		}
		fmt.Fprintf(bw, "\n -- %s  %s\n", maintainer, d.UTC().Format(time.RFC1123Z))
	}
	return bw.Flush()
}

// plain strips the markdown a changelog line does not render.
func plain(s string) string {
	s = link.ReplaceAllString(s, "$1")
	return strings.ReplaceAll(s, "`", "")
}

// wrap writes one "  * " item wrapped at width.
func wrap(w *bufio.Writer, text string) {
	prefix, line := "  * ", ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(prefix)+len(line)+1+len(word) > width {
			w.WriteString(prefix + line + "\n")
			prefix, line = "    ", ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	w.WriteString(prefix + line + "\n")
}
