package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/bastionchat/bastion/api"
)

// BenchmarkChannelFanOut measures one channel post delivered to n subscribed WebSocket
// connections: each iteration submits a signed post over HTTP (the server verifies it,
// commits it with its verifier state and fans it out) and waits until every subscriber
// has read its channel_posts frame. Reported, as medians over the iterations:
//
//	post-ms     the POST's round trip (verify, commit, queue the frame for n connections)
//	last-ms     from sending the POST to the last subscriber's receipt
//	cpu-µs/sub  CPU time of server and subscriber processes together, per subscriber
//	server-cpu-µs/sub  the server process's share (it also runs the poster's client)
//
// n = 0 is the baseline of the post alone.
//
//	go test -run '^$' -bench ChannelFanOut -benchtime 5x ./internal/server
func BenchmarkChannelFanOut(b *testing.B) {
	for _, n := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) { benchFanOut(b, n) })
	}
}

// The subscribers run in a child process (this test binary, running
// TestChannelFanOutChild): 10,000 connections are 20,000 descriptors in one process,
// over this machine's limit of 20,000, and a separate process is closer to real clients
// anyway. The child reports, per post, when its last subscriber read it (the machines'
// clocks are the same clock) and its CPU time so far.
const (
	childEnvURL     = "BASTION_BENCH_CHILD_URL"
	childEnvAuth    = "BASTION_BENCH_CHILD_AUTH"
	childEnvChannel = "BASTION_BENCH_CHILD_CHANNEL"
	childEnvN       = "BASTION_BENCH_CHILD_N"
)

func benchFanOut(b *testing.B, n int) {
	h := newHarness(b, func(c *Config) { c.IPRetentionDays = 0 })
	alice := h.register("+14155557400", 0)
	o := newOwner(b, fmt.Sprintf("bench_%d", n))
	h.createChannel(alice, o)

	var child *exec.Cmd
	var out *bufio.Reader
	var in io.WriteCloser
	if n > 0 {
		child = exec.Command(os.Args[0], "-test.run=^TestChannelFanOutChild$", "-test.v")
		child.Env = append(os.Environ(),
			childEnvURL+"=ws"+strings.TrimPrefix(h.ts.URL, "http")+"/v1/websocket",
			childEnvAuth+"="+base64.StdEncoding.EncodeToString([]byte(alice.user()+":"+alice.password)),
			childEnvChannel+"="+o.id(), childEnvN+"="+strconv.Itoa(n))
		stdout, err := child.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if in, err = child.StdinPipe(); err != nil {
			b.Fatal(err)
		}
		child.Stderr = os.Stderr
		if err := child.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			in.Close() // the child's signal to hang up
			child.Wait()
		}()
		out = bufio.NewReader(stdout)
		if line := childLine(b, out); line != "ready" {
			b.Fatalf("child said %q, want ready", line)
		}
	}

	var post, last, cpu, srvCPU []float64
	childCPU := time.Duration(0)
	b.ResetTimer()
	for i := range b.N {
		p := o.next(fmt.Sprintf("post %d to %d subscribers", i, n))
		req, _ := json.Marshal(api.PostRequest{Post: p.Bytes()})
		cpu0 := cpuTime()
		t0 := time.Now()
		h.want(h.do("POST", "/v1/channels/"+o.id()+"/posts", req, alice), 200, "", "post")
		tPost := time.Since(t0)
		tLast := tPost
		if n > 0 {
			var seq, at, ccpu int64
			if _, err := fmt.Sscanf(childLine(b, out), "done %d %d %d", &seq, &at, &ccpu); err != nil || seq != int64(i+1) {
				b.Fatalf("child report for post %d: seq %d, %v", p.Seq(), seq, err)
			}
			tLast = max(tLast, time.Duration(at-t0.UnixNano()))
			serverCPU := cpuTime() - cpu0
			cpu = append(cpu, float64((serverCPU+time.Duration(ccpu)-childCPU).Microseconds())/float64(n))
			srvCPU = append(srvCPU, float64(serverCPU.Microseconds())/float64(n))
			childCPU = time.Duration(ccpu)
		}
		post = append(post, float64(tPost.Microseconds())/1000)
		last = append(last, float64(tLast.Microseconds())/1000)
	}
	b.StopTimer()
	b.ReportMetric(median(post), "post-ms")
	b.ReportMetric(median(last), "last-ms")
	if n > 0 {
		b.ReportMetric(median(cpu), "cpu-µs/sub")
		b.ReportMetric(median(srvCPU), "server-cpu-µs/sub")
	}
	b.Logf("n=%d runs=%d post-ms=%v last-ms=%v cpu-µs/sub=%v server-cpu-µs/sub=%v", n, b.N, post, last, cpu, srvCPU)
}

func childLine(b *testing.B, r *bufio.Reader) string {
	b.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			b.Fatalf("reading the child: %v", err)
		}
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "bench: "); ok {
			return rest
		}
	}
}

// TestChannelFanOutChild is the subscriber side of BenchmarkChannelFanOut; it runs only
// in the benchmark's child process.
func TestChannelFanOutChild(t *testing.T) {
	url := os.Getenv(childEnvURL)
	if url == "" {
		t.Skip("runs only as BenchmarkChannelFanOut's child process")
	}
	n, _ := strconv.Atoi(os.Getenv(childEnvN))
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Basic " + os.Getenv(childEnvAuth)}}), Timeout: 30 * time.Second}
	sub, _ := json.Marshal(api.Frame{Type: api.FrameChannelSubscribe, Channels: []string{os.Getenv(childEnvChannel)}})
	type report struct {
		seq uint64
		at  int64
	}
	reports := make(chan report, 1024)
	conns := make([]net.Conn, 0, n)
	var wg sync.WaitGroup
	for i := range n {
		conn, br, _, err := d.Dial(context.Background(), url)
		if err != nil {
			t.Fatalf("dialing subscriber %d: %v", i, err)
		}
		conns = append(conns, conn)
		var r io.Reader = conn
		if br != nil {
			r = br
		}
		if err := wsutil.WriteClientText(conn, sub); err != nil {
			t.Fatal(err)
		}
		for range 2 { // queue_empty and the subscription's answer, in either order
			if _, err := wsutil.ReadServerText(rw{r, conn}); err != nil {
				t.Fatalf("subscriber %d: %v", i, err)
			}
		}
		wg.Go(func() {
			// The parent sends one post at a time and waits for every subscriber, so the
			// k-th channel_posts frame of a connection is the k-th post. Nothing is
			// decoded: the subscribers share two cores with the server, and their cost
			// would be counted as delivery time.
			k := uint64(0)
			for {
				p, err := wsutil.ReadServerText(rw{r, conn})
				if err != nil {
					return
				}
				at := time.Now().UnixNano()
				if bytes.Contains(p, []byte(`"type":"channel_posts"`)) {
					k++
					reports <- report{k, at}
				}
			}
		})
	}
	fmt.Println("bench: ready")
	go func() {
		io.Copy(io.Discard, os.Stdin) // the parent closes stdin when it is done
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
		close(reports)
	}()
	count := map[uint64]int{}
	latest := map[uint64]int64{}
	for r := range reports {
		count[r.seq]++
		latest[r.seq] = max(latest[r.seq], r.at)
		if count[r.seq] == n {
			fmt.Printf("bench: done %d %d %d\n", r.seq, latest[r.seq], int64(cpuTime()))
			delete(count, r.seq)
			delete(latest, r.seq)
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
