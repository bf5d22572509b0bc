// Package metrics exports relayd's counters to Prometheus and serves the
// admin endpoints: /metrics, /healthz, /readyz, and the admin API (/clients,
// /clients/kick, /debug/pprof/).
//
// Nothing here runs on the forwarding path: connections count frames in
// their own single-writer counters, and the collector sums them when
// Prometheus scrapes.
package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/relayd/relayd/internal/cluster"
	"github.com/relayd/relayd/internal/server"
)

// ReloadStats reports configuration reload outcomes.
type ReloadStats struct {
	Succeeded, Failed uint64
	LastOK            bool      // whether the last (re)load succeeded
	LastSuccess       time.Time // when the configuration in effect was loaded
}

// Sources are where the collector reads its values at scrape time.
type Sources struct {
	Server  func() server.Stats
	Reloads func() ReloadStats
	// Cluster reports the cluster's counters; false (or a nil func) on a
	// single node, whose cluster metrics are then absent.
	Cluster func() (cluster.Stats, bool)
	Version string
}

// NewRegistry returns a Prometheus registry with relayd's collector and the
// Go and process collectors.
func NewRegistry(src Sources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

var (
	descConnections = prometheus.NewDesc("relayd_connections",
		"Open client connections, logged in or not.", []string{"listener"}, nil)
	descClients = prometheus.NewDesc("relayd_clients",
		"Logged-in ClientIDs.", nil, nil)
	descForwarded = prometheus.NewDesc("relayd_frames_forwarded_total",
		"Transfer frames queued for their receiver.", nil, nil)
	descBytes = prometheus.NewDesc("relayd_bytes_forwarded_total",
		"Payload bytes of the frames forwarded.", nil, nil)
	descDropped = prometheus.NewDesc("relayd_frames_dropped_total",
		"Transfer frames not forwarded: receiver offline or its send queue full.", []string{"reason"}, nil)
	descHeartbeats = prometheus.NewDesc("relayd_heartbeats_total",
		"Heartbeat frames received.", nil, nil)
	descLogins = prometheus.NewDesc("relayd_logins_total",
		"Successful logins.", []string{"listener"}, nil)
	descSenderWaits = prometheus.NewDesc("relayd_sender_waits_total",
		"Times a sender waited for room at a receiver that was taking data (docs/PROTOCOL.md rule 9): relayd stopped reading from it.", nil, nil)
	descClusterConnected = prometheus.NewDesc("relayd_cluster_connected",
		"1 while this node is connected to NATS.", nil, nil)
	descClusterNodes = prometheus.NewDesc("relayd_cluster_nodes",
		"Live nodes of the cluster, this one included.", nil, nil)
	descClusterRemote = prometheus.NewDesc("relayd_cluster_remote_clients",
		"ClientIDs logged in on other nodes.", nil, nil)
	descClusterSent = prometheus.NewDesc("relayd_cluster_frames_sent_total",
		"Frames handed to NATS for clients on other nodes.", nil, nil)
	descClusterReceived = prometheus.NewDesc("relayd_cluster_frames_received_total",
		"Frames received from other nodes for clients on this one.", nil, nil)
	descClusterKicks = prometheus.NewDesc("relayd_cluster_kicks_total",
		"Local connections kicked by a login on another node.", nil, nil)
	descKicks = prometheus.NewDesc("relayd_kicks_total",
		"Connections kicked: by a newer login with their ClientID, or through POST /clients/kick.", nil, nil)
	descDisconnects = prometheus.NewDesc("relayd_disconnects_total",
		"Connections closed, by reason.", []string{"reason"}, nil)
	descReloads = prometheus.NewDesc("relayd_config_reloads_total",
		"Configuration reloads, by result.", []string{"result"}, nil)
	descLastReloadOK = prometheus.NewDesc("relayd_config_last_reload_successful",
		"1 if the last configuration reload succeeded, else 0.", nil, nil)
	descLastReloadTime = prometheus.NewDesc("relayd_config_last_reload_success_timestamp_seconds",
		"When the configuration in effect was loaded (Unix time).", nil, nil)
	descBuildInfo = prometheus.NewDesc("relayd_build_info",
		"Build information; the value is always 1.", []string{"version", "goversion"}, nil)
)

// collector turns one server.Stats snapshot per scrape into metrics.
type collector struct{ src Sources }

func newCollector(src Sources) *collector { return &collector{src: src} }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descConnections, descClients, descForwarded, descBytes, descDropped, descHeartbeats,
		descLogins, descKicks, descDisconnects, descSenderWaits,
		descClusterConnected, descClusterNodes, descClusterRemote, descClusterSent, descClusterReceived, descClusterKicks, descReloads, descLastReloadOK, descLastReloadTime, descBuildInfo,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Server()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	for _, l := range st.Listeners {
		gauge(descConnections, float64(l.Connections), l.Name)
		counter(descLogins, l.Logins, l.Name)
	}
	gauge(descClients, float64(st.Clients))
	counter(descForwarded, st.Frames.Forwarded)
	counter(descBytes, st.Frames.Bytes)
	counter(descHeartbeats, st.Frames.Heartbeats)
	dropped := st.Frames.Dropped
	if c.src.Cluster != nil {
		if cs, ok := c.src.Cluster(); ok {
			up := 0.0
			if cs.Connected {
				up = 1
			}
			gauge(descClusterConnected, up)
			gauge(descClusterNodes, float64(cs.Nodes))
			gauge(descClusterRemote, float64(cs.RemoteClients))
			counter(descClusterSent, cs.FramesSent)
			counter(descClusterReceived, cs.FramesReceived)
			counter(descClusterKicks, cs.Kicks)
			// Frames the cluster took and never wrote to a socket.
			dropped[server.DropOffline] += cs.DroppedOffline
			dropped[server.DropQueueFull] += cs.DroppedQueueFull
			dropped[server.DropClosed] += cs.DroppedClosed + cs.DroppedMalformed
			dropped[server.DropClusterDown] += cs.DroppedDown
			dropped[server.DropShutdown] += cs.DroppedShutdown
		}
	}
	for _, d := range server.Drops() {
		counter(descDropped, dropped[d], d.String())
	}
	counter(descKicks, st.Kicks)
	counter(descSenderWaits, st.Frames.Waits)
	for _, r := range server.Reasons() {
		counter(descDisconnects, st.Disconnects[r], r.String())
	}

	rs := c.src.Reloads()
	counter(descReloads, rs.Succeeded, "success")
	counter(descReloads, rs.Failed, "failure")
	ok := 0.0
	if rs.LastOK {
		ok = 1
	}
	gauge(descLastReloadOK, ok)
	gauge(descLastReloadTime, float64(rs.LastSuccess.UnixNano())/1e9)
	gauge(descBuildInfo, 1, c.src.Version, runtime.Version())
}
