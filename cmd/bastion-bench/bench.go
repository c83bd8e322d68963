package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/reliability"
)

type bench struct {
	cfg    config
	log    io.Writer
	srv    *reliability.Server
	tmp    string
	pid    int
	start  time.Time
	load0  string
	numSeq atomic.Int64

	senders, recipients []*reliability.Device
	wsSenders           []*reliability.WSSender
	recvConns           []*reliability.Conn

	// inflight maps an envelope id to its send time while it is on its way.
	inflight  sync.Map
	durable   atomic.Int64
	delivered atomic.Int64
	failed    atomic.Int64
	recording atomic.Bool
	latMu     sync.Mutex
	durLat    []time.Duration
	delLat    []time.Duration

	sections []string
}

func newBench(ctx context.Context, c config, log io.Writer) (*bench, error) {
	b := &bench{cfg: c, log: log, start: time.Now(), load0: loadavg()}
	if slices.Contains(c.modes, "idle") {
		raiseNoFile() // before the server starts: it inherits the limit
	}
	if c.server != "" {
		b.srv = reliability.Attach(c.server, c.console)
		b.pid = c.pid
		return b, nil
	}
	var err error
	if b.tmp, err = os.MkdirTemp("", "bastion-bench"); err != nil {
		return nil, err
	}
	bin := c.bastiond
	if bin == "" {
		fmt.Fprintln(log, "building bastiond ...")
		if bin, err = reliability.Build(ctx, b.tmp); err != nil {
			return nil, err
		}
	}
	args := []string{"--rate-verify-ip", "1000000/1h", "--rate-verify-prefix", "1000000/1h",
		"--rate-verify-number", "1000000/1h", "--rate-bundle-pair", "100000000/1h"}
	if c.serverArgs != "" {
		args = append(args, strings.Fields(c.serverArgs)...)
	}
	if b.srv, err = reliability.Start(ctx, bin, b.tmp+"/data", args...); err != nil {
		return nil, err
	}
	b.pid = b.srv.Pid()
	return b, nil
}

func (b *bench) close() {
	for _, c := range b.recvConns {
		c.Close()
	}
	for _, s := range b.wsSenders {
		s.Close()
	}
	if b.tmp != "" {
		b.srv.Stop()
		os.RemoveAll(b.tmp)
	}
}

// number returns a fresh phone number: NANP, 555 exchange, one per registration.
func (b *bench) number() string {
	n := b.numSeq.Add(1)
	return fmt.Sprintf("+1%03d555%04d", 201+n/10000, n%10000)
}

func (b *bench) register(ctx context.Context, n int, k reliability.KeyOptions) ([]*reliability.Device, error) {
	devs := make([]*reliability.Device, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			d, err := b.srv.Register(rctx, b.number(), k)
			if err != nil {
				errs <- err
				return
			}
			devs[i] = d
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return devs, nil
}

func (b *bench) setup(ctx context.Context) error {
	fmt.Fprintf(b.log, "registering %d senders and %d recipients ...\n", b.cfg.senders, b.cfg.senders)
	var err error
	if b.senders, err = b.register(ctx, b.cfg.senders, reliability.KeyOptions{}); err != nil {
		return err
	}
	if b.recipients, err = b.register(ctx, b.cfg.senders, reliability.KeyOptions{}); err != nil {
		return err
	}
	for _, r := range b.recipients {
		c, err := b.srv.Dial(ctx, r)
		if err != nil {
			return err
		}
		b.recvConns = append(b.recvConns, c)
		go b.receive(c, nil)
	}
	if b.cfg.transport == "ws" {
		for _, s := range b.senders {
			w, err := b.srv.DialSender(ctx, s)
			if err != nil {
				return err
			}
			b.wsSenders = append(b.wsSenders, w)
		}
	}
	return nil
}

// receive reads a recipient's frames, records deliveries and acks each frame's envelopes.
// got, if not nil, is told each envelope count and queue_empty (as -1).
func (b *bench) receive(c *reliability.Conn, got chan<- int) {
	for {
		f, err := c.Next(time.Time{})
		if err != nil {
			return
		}
		switch f.Type {
		case api.FrameQueueEmpty:
			if got != nil {
				got <- -1
			}
		case api.FrameEnvelopes:
			now := time.Now()
			ids := make([]uuid.UUID, len(f.Envelopes))
			for i, e := range f.Envelopes {
				ids[i] = e.ID
				if t0, ok := b.inflight.LoadAndDelete(e.ID); ok && b.recording.Load() {
					b.latMu.Lock()
					b.delLat = append(b.delLat, now.Sub(t0.(time.Time)))
					b.latMu.Unlock()
				}
			}
			if err := c.Ack(ids); err != nil {
				return
			}
			b.delivered.Add(int64(len(ids)))
			if got != nil {
				got <- len(ids)
			}
		}
	}
}

// send sends one 256-byte envelope from sender i to its recipient, timed from t0.
func (b *bench) send(ctx context.Context, i int, to *reliability.Device, t0 time.Time) error {
	body := make([]byte, 256)
	rand.Read(body)
	id := uuid.New()
	b.inflight.Store(id, t0)
	var err error
	if b.cfg.transport == "ws" {
		err = b.wsSenders[i].Send(ctx, to, id, body)
	} else {
		err = b.srv.Send(ctx, b.senders[i], to, id, body)
	}
	if err != nil {
		b.inflight.Delete(id)
		if ctx.Err() == nil { // a send cut off by the end of a run is not a failure
			b.failed.Add(1)
		}
		return err
	}
	b.durable.Add(1)
	if b.recording.Load() {
		d := time.Since(t0)
		b.latMu.Lock()
		b.durLat = append(b.durLat, d)
		b.latMu.Unlock()
	}
	return nil
}

func (b *bench) resetCounters() {
	b.durable.Store(0)
	b.delivered.Store(0)
	b.failed.Store(0)
	b.latMu.Lock()
	b.durLat, b.delLat = nil, nil
	b.latMu.Unlock()
}

// progress prints a line a second until stop is closed.
func (b *bench) progress(mode string, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	var last int64
	for {
		select {
		case <-stop:
			fmt.Fprintln(b.log)
			return
		case <-t.C:
			d := b.delivered.Load()
			fmt.Fprintf(b.log, "\r%-8s %5.1fs  durable %8d  delivered %8d  failed %5d  %7d/s   ",
				mode, time.Since(start).Seconds(), b.durable.Load(), d, b.failed.Load(), d-last)
			last = d
		}
	}
}

// usage is CPU time of the server (when its pid is known) and of this process.
type usage struct {
	server, self time.Duration
	ok           bool
}

func (b *bench) usage() usage {
	var u usage
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	u.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if b.pid == 0 {
		return u
	}
	p, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.pid))
	if err != nil {
		return u
	}
	// Fields after the command name (which is in parentheses and may hold spaces).
	f := strings.Fields(string(p[strings.LastIndexByte(string(p), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	u.server = time.Duration(ut+st) * time.Second / clkTck
	u.ok = true
	return u
}

func (u usage) since(v usage) usage {
	return usage{server: u.server - v.server, self: u.self - v.self, ok: u.ok && v.ok}
}

func (b *bench) cpuLine(u usage, msgs int64) string {
	if msgs == 0 {
		return ""
	}
	s := fmt.Sprintf("generator CPU %.0f µs/msg", float64(u.self.Microseconds())/float64(msgs))
	if u.ok {
		s = fmt.Sprintf("server CPU %.0f µs/msg, ", float64(u.server.Microseconds())/float64(msgs)) + s
	}
	return s
}

func (b *bench) closed(ctx context.Context) error {
	b.resetCounters()
	stop := make(chan struct{})
	go b.progress("closed", stop)
	// One second of warm-up, then the measured window.
	ctx, cancel := context.WithTimeout(ctx, b.cfg.duration+time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range b.senders {
		wg.Go(func() {
			for ctx.Err() == nil {
				b.send(ctx, i, b.recipients[i], time.Now())
			}
		})
	}
	time.Sleep(time.Second)
	d0, u0, t0 := b.delivered.Load(), b.usage(), time.Now()
	time.Sleep(b.cfg.duration)
	d1, u1, t1 := b.delivered.Load(), b.usage(), time.Now()
	cancel()
	wg.Wait()
	close(stop)
	b.waitDelivered()
	n := d1 - d0
	rate := float64(n) / t1.Sub(t0).Seconds()
	b.section(fmt.Sprintf("closed loop, %d senders over %s, %s: **%.0f msgs/s** sent, durable, delivered and acked "+
		"(%d in %.1f s; %d sends failed); %s",
		len(b.senders), b.cfg.transport, b.cfg.duration, rate, n, t1.Sub(t0).Seconds(), b.failed.Load(), b.cpuLine(u1.since(u0), n)))
	return nil
}

// waitDelivered waits (up to 30 s) until everything sent was delivered.
func (b *bench) waitDelivered() {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		empty := true
		b.inflight.Range(func(any, any) bool { empty = false; return false })
		if empty {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bench) open(ctx context.Context) error {
	b.resetCounters()
	stop := make(chan struct{})
	go b.progress("open", stop)
	jobs := make(chan time.Time, 1<<16)
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := max(256, b.cfg.rate/20)
	for range workers {
		wg.Go(func() {
			for t0 := range jobs {
				i := int(next.Add(1)) % len(b.senders)
				b.send(ctx, i, b.recipients[i], t0)
			}
		})
	}
	b.recording.Store(true)
	u0 := b.usage()
	start := time.Now()
	total := int(b.cfg.duration.Seconds() * float64(b.cfg.rate))
	interval := time.Second / time.Duration(b.cfg.rate)
	for k := 0; k < total && ctx.Err() == nil; {
		now := time.Now()
		for ; k < total; k++ {
			due := start.Add(time.Duration(k) * interval)
			if due.After(now) {
				break
			}
			jobs <- due // the latency counts from when the send was due, not when it went
		}
		time.Sleep(200 * time.Microsecond)
	}
	close(jobs)
	wg.Wait()
	b.waitDelivered()
	u1 := b.usage()
	b.recording.Store(false)
	close(stop)
	b.latMu.Lock()
	dur, del := b.durLat, b.delLat
	b.latMu.Unlock()
	b.section(fmt.Sprintf("open loop at %d msgs/s over %s for %s (%d sent, %d failed): send -> durable %s; send -> delivered %s; %s",
		b.cfg.rate, b.cfg.transport, b.cfg.duration, total, b.failed.Load(), pcts(dur), pcts(del),
		b.cpuLine(u1.since(u0), int64(len(del)))))
	return nil
}

func pcts(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	slices.Sort(d)
	p := func(q float64) string {
		i := min(len(d)-1, int(q*float64(len(d))))
		return fmt.Sprintf("%.2f ms", float64(d[i].Microseconds())/1000)
	}
	return fmt.Sprintf("p50 %s, p99 %s, p999 %s (max %s)", p(.5), p(.99), p(.999), p(1))
}

func (b *bench) drainMode(ctx context.Context) error {
	devs, err := b.register(ctx, 1, reliability.KeyOptions{})
	if err != nil {
		return err
	}
	off := devs[0]
	b.resetCounters()
	stop := make(chan struct{})
	go b.progress("queue", stop)
	var next atomic.Int64
	var wg sync.WaitGroup
	q0, qt0 := b.usage(), time.Now()
	for i := range b.senders {
		wg.Go(func() {
			for next.Add(1) <= int64(b.cfg.drain) && ctx.Err() == nil {
				if b.send(ctx, i, off, time.Now()) != nil {
					next.Add(-1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	qel, qu := time.Since(qt0), b.usage().since(q0)
	b.section(fmt.Sprintf("queueing for an offline device, %d senders over %s: %d sends durable in %.2f s: **%.0f msgs/s** durable (no delivery); %s",
		len(b.senders), b.cfg.transport, b.cfg.drain, qel.Seconds(), float64(b.cfg.drain)/qel.Seconds(), b.cpuLine(qu, int64(b.cfg.drain))))
	b.inflight.Clear()
	b.resetCounters()
	fmt.Fprintf(b.log, "draining %d envelopes ...\n", b.cfg.drain)
	u0 := b.usage()
	t0 := time.Now()
	c, err := b.srv.Dial(ctx, off)
	if err != nil {
		return err
	}
	defer c.Close()
	got := make(chan int, 1024)
	go b.receive(c, got)
	n, empty := 0, false
	var tLast time.Time
	for n < b.cfg.drain || !empty {
		select {
		case k := <-got:
			if k < 0 {
				empty = true
			} else {
				n += k
				tLast = time.Now()
			}
		case <-time.After(30 * time.Second):
			return fmt.Errorf("drain stalled after %d of %d envelopes", n, b.cfg.drain)
		}
	}
	u1 := b.usage()
	el := tLast.Sub(t0)
	b.section(fmt.Sprintf("offline drain: %d envelopes delivered and acked in %.2f s from connect: **%.0f envelopes/s**; %s",
		n, el.Seconds(), float64(n)/el.Seconds(), b.cpuLine(u1.since(u0), int64(n))))
	return nil
}

func (b *bench) bundles(ctx context.Context) error {
	const targets = 8
	fmt.Fprintf(b.log, "registering %d bundle targets with %d one-time keys of each kind ...\n", targets, b.cfg.bundleKeys)
	tg, err := b.register(ctx, targets, reliability.KeyOptions{})
	if err != nil {
		return err
	}
	for _, t := range tg {
		for k := 0; k < b.cfg.bundleKeys; k += 100 {
			n := min(100, b.cfg.bundleKeys-k)
			if err := b.srv.UploadKeys(ctx, t, reliability.KeyOptions{PreKeys: n, KyberPreKeys: n}); err != nil {
				return err
			}
		}
	}
	var ok, oneTime, failed atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, b.cfg.duration)
	defer cancel()
	u0, t0 := b.usage(), time.Now()
	var wg sync.WaitGroup
	for i := range b.cfg.fetchers {
		wg.Go(func() {
			for j := i; rctx.Err() == nil; j++ {
				bd, err := b.srv.Bundle(rctx, b.senders[j%len(b.senders)], tg[j%targets])
				if err != nil {
					if rctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				ok.Add(1)
				if len(bd.Devices) == 1 && bd.Devices[0].PreKey != nil && !bd.Devices[0].KyberLastResort {
					oneTime.Add(1)
				}
			}
		})
	}
	wg.Wait()
	el, u := time.Since(t0), b.usage().since(u0)
	b.section(fmt.Sprintf("bundle fetches, %d fetchers over %s: **%.0f bundles/s** (%d, of which %d carried one-time keys; %d failed); %s",
		b.cfg.fetchers, b.cfg.duration, float64(ok.Load())/el.Seconds(), ok.Load(), oneTime.Load(), failed.Load(),
		strings.ReplaceAll(b.cpuLine(u, ok.Load()), "msg", "bundle")))
	return nil
}

func (b *bench) idleMode(ctx context.Context) error {
	if b.pid == 0 {
		return errors.New("idle needs the server's pid (--pid with --server)")
	}
	settle := func() (rss, heap int64) {
		time.Sleep(2 * time.Second)
		return b.rss(), b.goMem()
	}
	rss0, heap0 := settle()
	conns := make([]*reliability.Conn, 0, b.cfg.idle)
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprintln(b.log)
				return
			case <-t.C:
				fmt.Fprintf(b.log, "\ridle     %6d connections  ", next.Load())
			}
		}
	}()
	for range 32 {
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(b.cfg.idle) || ctx.Err() != nil {
					return
				}
				c, err := b.srv.Dial(ctx, b.senders[int(k)%len(b.senders)])
				if err == nil {
					_, err = c.Next(time.Now().Add(30 * time.Second)) // queue_empty: set up and idle
				}
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	select {
	case err := <-errc:
		for _, c := range conns {
			c.Close()
		}
		return fmt.Errorf("after %d connections: %w", len(conns), err)
	default:
	}
	rss1, heap1 := settle()
	n := int64(len(conns))
	b.section(fmt.Sprintf("idle WebSockets: %d open; server RSS %d -> %d MiB: **%.1f KiB per connection** (Go heap+stack in use %d -> %d MiB: %.1f KiB per connection)",
		n, rss0>>20, rss1>>20, float64(rss1-rss0)/float64(n)/1024, heap0>>20, heap1>>20, float64(heap1-heap0)/float64(n)/1024))
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// rss is the server's resident set size from /proc/<pid>/status, in bytes.
func (b *bench) rss() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// goMem is the server's Go heap and stacks in use, from /metrics.
func (b *bench) goMem() int64 {
	resp, err := http.Get(b.srv.URL + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		for _, m := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes "} {
			if v, ok := strings.CutPrefix(l, m); ok {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
	}
	return int64(sum)
}

func raiseNoFile() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur < r.Max {
		r.Cur = r.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}

func loadavg() string {
	p, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(p))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	p, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(p), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "?"
}

func (b *bench) section(s string) {
	fmt.Fprintln(b.log, s)
	b.sections = append(b.sections, s)
}

func (b *bench) run(ctx context.Context, out io.Writer) error {
	if err := b.setup(ctx); err != nil {
		return err
	}
	for _, m := range b.cfg.modes {
		var err error
		switch strings.TrimSpace(m) {
		case "closed":
			err = b.closed(ctx)
		case "open":
			err = b.open(ctx)
		case "drain":
			err = b.drainMode(ctx)
		case "bundles":
			err = b.bundles(ctx)
		case "idle":
			err = b.idleMode(ctx)
		default:
			err = fmt.Errorf("unknown mode %q", m)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	fmt.Fprintf(out, "### Run of %s\n\n", b.start.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(out, "%d CPUs (%s), GOMAXPROCS %d; load average %s at start, %s at end; transport %s, %d senders.\n\n",
		runtime.NumCPU(), cpuModel(), runtime.GOMAXPROCS(0), b.load0, loadavg(), b.cfg.transport, b.cfg.senders)
	for _, s := range b.sections {
		fmt.Fprintf(out, "- %s\n", s)
	}
	fmt.Fprintln(out)
	return nil
}
