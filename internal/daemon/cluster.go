package daemon

import (
	"context"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/cluster"
	"github.com/relayd/relayd/internal/registry"
)

// registrySwitch is the registry the server uses: the local one, or a
// cluster over it. A reload that adds, changes or removes [cluster] swaps
// what it points to; every cluster is built over the same local registry,
// so local logins survive the swap (a new cluster announces them again).
type registrySwitch struct {
	local *registry.Local
	cur   atomic.Pointer[registryBox]
}

type registryBox struct{ registry.Registry }

func newRegistrySwitch() *registrySwitch {
	s := &registrySwitch{local: registry.NewLocal()}
	s.cur.Store(&registryBox{s.local})
	return s
}

func (s *registrySwitch) set(r registry.Registry) { s.cur.Store(&registryBox{r}) }

func (s *registrySwitch) Register(ctx context.Context, id string, p registry.Peer) (registry.Peer, error) {
	return s.cur.Load().Register(ctx, id, p)
}
func (s *registrySwitch) Unregister(id string, p registry.Peer) { s.cur.Load().Unregister(id, p) }
func (s *registrySwitch) Lookup(id []byte) (registry.Peer, bool) {
	return s.cur.Load().Lookup(id)
}
func (s *registrySwitch) Len() int { return s.local.Len() }

// clusterOptions maps [cluster] to the cluster package's options.
func clusterOptions(c *config.Cluster, cfg *config.Config, log *slog.Logger) cluster.Options {
	maxFrame := int(cfg.Limits.MaxPayload)
	for _, l := range cfg.Listeners {
		maxFrame = max(maxFrame, int(l.Limits.MaxPayload))
	}
	return cluster.Options{
		Name: c.Name, NodeID: c.NodeID, URLs: c.NATSURLs,
		Credentials: c.NATSCredentials, User: c.NATSUser, Password: c.NATSPassword,
		TLSCA: c.NATSTLSCA, TLSCert: c.NATSTLSCert, TLSKey: c.NATSTLSKey,
		NodeTimeout: c.NodeTimeout.D(),
		MaxFrame:    maxFrame + 522,
		Log:         log,
	}
}

// CheckCluster validates [cluster] the way a start would, without
// contacting NATS (relayd -t).
func CheckCluster(cfg *config.Config) error {
	if cfg.Cluster == nil {
		return nil
	}
	c, err := cluster.New(clusterOptions(cfg.Cluster, cfg, slog.New(slog.DiscardHandler)), registry.NewLocal())
	if err != nil {
		return err
	}
	return c.Close()
}

// clusterStartTimeout bounds joining the cluster at start or reload.
const clusterStartTimeout = 10 * time.Second

// joinCluster builds and starts a cluster for cfg over the local registry;
// nil without [cluster].
func (d *Daemon) joinCluster(cfg *config.Config) (*cluster.Cluster, error) {
	if cfg.Cluster == nil {
		return nil, nil
	}
	c, err := cluster.New(clusterOptions(cfg.Cluster, cfg, d.log.Logger), d.reg.local)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// clusterChanged reports whether a reload must replace the cluster.
func clusterChanged(old, new *config.Config) bool {
	return !reflect.DeepEqual(old.Cluster, new.Cluster)
}

// clusterStats is the metrics source for the cluster gauges and counters.
func (d *Daemon) clusterStats() (cluster.Stats, bool) {
	c := d.cluster.Load()
	if c == nil {
		return cluster.Stats{}, false
	}
	return c.Stats(), true
}
