package config

import (
	"crypto/tls"
	"os"
)

// Parsers that live in other packages, for Check; nil: Check only makes
// sure the file is readable. config cannot import those packages (they
// import config), so relayd's main sets these.
var (
	// CheckJWTKeys parses an [auth] jwt_key_file.
	CheckJWTKeys func(path string) error
	// CheckWebConfig parses an [admin] web_config_file.
	CheckWebConfig func(path string) error
)

// Check does everything a start would short of binding sockets and
// connecting to NATS: the configuration is already validated; this loads
// every TLS file and reads every other file the configuration names.
// Errors are *Error naming the file, line and key.
func (c *Config) Check() error {
	for i := range c.Listeners {
		if _, err := c.Listeners[i].LoadTLS(); err != nil {
			return err
		}
	}
	if c.Admin != nil && c.Admin.WebConfigFile != "" {
		if err := checkFile(c.Admin.WebConfigFile, CheckWebConfig); err != nil {
			return c.src.errorf(key("admin", "web_config_file"), "%v", err)
		}
	}
	if c.Auth != nil {
		if err := checkFile(c.Auth.JWTKeyFile, CheckJWTKeys); err != nil {
			return c.src.errorf(key("auth", "jwt_key_file"), "%v", err)
		}
	}
	if cl := c.Cluster; cl != nil {
		if cl.NATSCredentials != "" {
			if err := checkFile(cl.NATSCredentials, nil); err != nil {
				return c.src.errorf(key("cluster", "nats_credentials"), "%v", err)
			}
		}
		if cl.NATSTLSCA != "" {
			if _, err := loadCA(cl.NATSTLSCA); err != nil {
				return c.src.errorf(key("cluster", "nats_tls_ca"), "%v", err)
			}
		}
		if cl.NATSTLSCert != "" {
			if _, err := tls.LoadX509KeyPair(cl.NATSTLSCert, cl.NATSTLSKey); err != nil {
				return c.src.errorf(key("cluster", "nats_tls_cert"), "load certificate %s and key %s: %v", cl.NATSTLSCert, cl.NATSTLSKey, err)
			}
		}
	}
	return nil
}

// checkFile reads path, then hands it to parse when there is one.
func checkFile(path string, parse func(string) error) error {
	if _, err := os.ReadFile(path); err != nil {
		return err
	}
	if parse != nil {
		return parse(path)
	}
	return nil
}
