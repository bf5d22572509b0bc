// Command relayd is the relay server.
//
//	relayd                 built-in defaults: one plain listener on 0.0.0.0:33333
//	relayd PORT            the same on another port
//	relayd -c FILE         run from a TOML configuration file
//	relayd -c FILE -t      check the configuration and exit
//	relayd --version       print the version and commit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/auth"
	"github.com/relayd/relayd/internal/buildinfo"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/metrics"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// relayd -t parses the files that other packages own with their parsers.
func init() {
	config.CheckJWTKeys = func(path string) error {
		_, err := auth.LoadKeys(path)
		return err
	}
	config.CheckWebConfig = metrics.ValidateWebConfig
}

const usage = `usage: relayd [PORT]
       relayd -c FILE [-t]
       relayd --version

  PORT          listen on 0.0.0.0:PORT with built-in defaults (default 33333)
  -c FILE       run from the TOML configuration FILE
  -t, --check   validate the configuration (syntax, keys, values, TLS files) and exit
  --version     print the version and commit and exit

Signals: SIGHUP reloads the configuration, SIGUSR1 rotates the log file,
SIGTERM and SIGINT shut down gracefully, SIGUSR2 drains (stop accepting,
close the connections spread over drain_period, exit 0).
`

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relayd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configPath := fs.String("c", "", "")
	check := fs.Bool("t", false, "")
	fs.BoolVar(check, "check", false, "")
	showVersion := fs.Bool("version", false, "")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return usageError(stderr, err.Error())
	}
	if *showVersion {
		fmt.Fprintf(stdout, "relayd %s (commit %s)\n", version, buildinfo.Commit())
		return 0
	}

	var cfg *config.Config
	switch {
	case len(rest) > 0 && *configPath != "":
		return usageError(stderr, "PORT cannot be combined with -c: set the listener address in the config file")
	case len(rest) > 1:
		return usageError(stderr, fmt.Sprintf("unexpected arguments %q", rest[1:]))
	case len(rest) == 1:
		port, err := strconv.Atoi(rest[0])
		if err != nil || port < 1 || port > 65535 {
			return usageError(stderr, fmt.Sprintf("invalid port %q: want a number from 1 to 65535", rest[0]))
		}
		cfg = config.DefaultWithPort(port)
	case *configPath != "":
		if cfg, err = config.Load(*configPath); err != nil {
			fmt.Fprintf(stderr, "relayd: %v\n", err)
			return 1
		}
	default:
		cfg = config.Default()
	}

	if *check {
		err := cfg.Check()
		if err == nil {
			err = daemon.CheckCluster(cfg)
		}
		if err != nil {
			fmt.Fprintf(stderr, "relayd: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}

	d, err := daemon.Start(cfg, stderr, version)
	if err != nil {
		fmt.Fprintf(stderr, "relayd: %v\n", err)
		return 1
	}
	if err := d.Run(context.Background()); err != nil {
		fmt.Fprintf(stderr, "relayd: %v\n", err)
		return 1
	}
	return 0
}

// parseInterspersed parses flags wherever they are among the arguments,
// so that "relayd 40000 -c FILE" is read like "relayd -c FILE 40000"
// (and refused for the same reason) instead of stopping at the PORT as
// the flag package does. Everything after "--" is an argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		parsed := args[:len(args)-fs.NArg()]
		args = fs.Args()
		if len(parsed) > 0 && parsed[len(parsed)-1] == "--" {
			return append(rest, args...), nil
		}
		if len(args) == 0 {
			return rest, nil
		}
		rest, args = append(rest, args[0]), args[1:]
	}
}

func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "relayd: %s (relayd -h for usage)\n", msg)
	return 2
}
