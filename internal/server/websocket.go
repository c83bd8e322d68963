package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
)

// Delivery over WebSocket (docs/api.md "WebSocket"). A connection is one goroutine that
// reads frames; writes happen under a mutex from whoever has something to say: the drain
// (started on connect and by each wake-up, at most one at a time, gone when the queue is
// empty), the ping timer, and the reader's pongs. An idle connection costs its reader
// goroutine, a timer and this struct; gobwas/ws keeps no buffers of its own.
//
// Delivery is at least once: envelopes are pushed in Seq order and stay queued until the
// device acks them; a reconnecting device gets every unacked one again, in order.

const (
	// wsWindow bounds envelopes sent but not yet acked, so a device that stops acking does
	// not make the server push its whole queue.
	wsWindow = 1024
	// wsBatch is the most envelopes one store read returns, wsFirstBatch the most the first
	// read of a connection returns, and wsReadBytes the body bytes a read aims at: after
	// each read the next one is sized from the bodies just seen, so that small envelopes
	// drain in few reads and 96 KiB ones never pin more than about a MiB per connection.
	wsBatch      = 256
	wsFirstBatch = 32
	wsReadBytes  = 1 << 20
	// wsFrameBytes is the body bytes after which an envelopes frame is cut: clients may
	// cap their frames, and one 96 KiB body in base64 and JSON is about 130 KB.
	wsFrameBytes = 256 << 10
	// wsMaxAckIDs bounds one ack frame.
	wsMaxAckIDs = 1000
	// wsMaxSends bounds send frames waiting for their commit per connection: enough to
	// fill a group commit from one busy client, and a bound on the goroutines it costs.
	wsMaxSends = 64
	// wsMaxAcks bounds ack deletes waiting for their commit per connection.
	wsMaxAcks = 8
)

type wsConn struct {
	s       *Server
	conn    net.Conn
	r       io.Reader // conn, or the upgrade's reader when it already holds frame bytes
	account uuid.UUID
	device  uint32
	ctx     context.Context
	cancel  context.CancelFunc

	wmu    sync.Mutex  // one frame writer at a time
	ending atomic.Bool // set by close: no more frames but the close frame

	mu        sync.Mutex
	cursor    int64 // highest Seq pushed on this connection
	inflight  map[uuid.UUID]struct{}
	draining  bool
	dirty     bool // a wake-up came while draining
	sentEmpty bool
	closed    bool
	// windowFull: the last drain stopped because wsWindow envelopes were unacked.
	windowFull bool
	ping       *time.Timer
	unsub      func()

	readSize int // envelopes the drain reads next (drain only; one drain at a time)

	sends chan struct{} // send frames in progress; made on the first send (reader only)
	acks  chan struct{} // ack deletes in progress; made on the first ack (reader only)
	ackWG sync.WaitGroup
}

func (s *Server) websocket(w http.ResponseWriter, r *http.Request, d device) error {
	s.wsMu.Lock()
	closing := s.wsClosing
	s.wsMu.Unlock()
	if closing {
		return newError(http.StatusServiceUnavailable, api.CodeShuttingDown, "the server is stopping; reconnect shortly")
	}
	// The connection log: the only record of where an account connects from, kept only
	// within the retention window (0 days: not at all).
	if s.cfg.IPRetentionDays > 0 {
		if ip := clientAddr(r); ip.IsValid() {
			if err := s.store.RecordConnection(r.Context(), d.account, ip, s.now()); err != nil {
				return fmt.Errorf("recording connection: %w", err)
			}
		}
	}
	conn, rw, _, err := ws.HTTPUpgrader{Timeout: s.cfg.Limits.WSWriteTimeout}.Upgrade(r, w)
	if err != nil {
		// The upgrader has answered the client; the error names a header, never a value.
		if conn != nil {
			conn.Close()
		}
		s.log.Debug("websocket upgrade refused", "err", err)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{s: s, conn: conn, r: conn, account: d.account, device: d.id, ctx: ctx, cancel: cancel}
	if rw.Reader.Buffered() > 0 {
		c.r = rw.Reader
	}
	s.wsMu.Lock()
	if s.wsClosing {
		s.wsMu.Unlock()
		cancel()
		conn.Close()
		return nil
	}
	s.ws[c] = struct{}{}
	s.wsWG.Add(1)
	s.wsMu.Unlock()
	s.metrics.wsConns.Inc()
	go c.run()
	return nil
}

func (c *wsConn) run() {
	defer c.s.wsWG.Done()
	c.mu.Lock()
	if c.closed { // closed (shutdown, re-registration) before it started
		c.mu.Unlock()
		return
	}
	c.unsub = c.s.notify.Subscribe(c.account, c.device, c.kick)
	c.ping = time.AfterFunc(c.s.cfg.Limits.WSPingInterval, c.sendPing)
	c.mu.Unlock()
	c.kick()
	code, reason := c.readLoop()
	c.ackWG.Wait()
	c.close(code, reason)
}

// close ends the connection once, with a close frame when code is not zero.
func (c *wsConn) close(code ws.StatusCode, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.ping != nil {
		c.ping.Stop()
	}
	unsub := c.unsub
	c.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	c.s.chans.dropConn(c) // channel subscriptions live as long as the connection
	c.cancel()
	c.ending.Store(true)
	// A writer stuck on a slow peer is cut short, so the close frame waits at most 1 s.
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.wmu.Lock()
	if code != 0 {
		c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.writeLocked(ws.OpClose, ws.NewCloseFrameBody(code, reason))
	}
	c.conn.Close()
	c.wmu.Unlock()
	c.s.wsMu.Lock()
	delete(c.s.ws, c)
	c.s.wsMu.Unlock()
	c.s.metrics.wsConns.Dec()
}

func (c *wsConn) write(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ending.Load() {
		return net.ErrClosed
	}
	// A peer that does not read within the timeout is dropped, not waited for.
	c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.Limits.WSWriteTimeout))
	return c.writeLocked(op, p)
}

func (c *wsConn) writeLocked(op ws.OpCode, p []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	var hb bytes.Buffer
	hb.Grow(ws.MaxHeaderSize)
	if err := ws.WriteHeader(&hb, h); err != nil {
		return err
	}
	bufs := net.Buffers{hb.Bytes(), p}
	_, err := bufs.WriteTo(c.conn)
	return err
}

func (c *wsConn) sendPing() {
	if err := c.write(ws.OpPing, nil); err != nil {
		c.close(0, "")
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.ping.Reset(c.s.cfg.Limits.WSPingInterval)
	}
	c.mu.Unlock()
}

// readLoop reads client frames until the connection ends, and says how to close it.
func (c *wsConn) readLoop() (ws.StatusCode, string) {
	limit := c.s.cfg.Limits.MaxWSMessage
	// Two missed pings: the peer is gone (a half-open connection) or too slow to keep.
	wait := 2 * c.s.cfg.Limits.WSPingInterval
	var msg []byte
	var msgOp ws.OpCode
	for {
		c.conn.SetReadDeadline(time.Now().Add(wait))
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return ws.StatusGoingAway, "no frame within the keepalive window"
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, ""
			}
			return ws.StatusProtocolError, "malformed frame header"
		}
		if !h.Masked || h.Rsv != 0 {
			return ws.StatusProtocolError, "client frames are masked and use no extension"
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 || !h.Fin {
				return ws.StatusProtocolError, "bad control frame"
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(c.r, p); err != nil {
				return 0, ""
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpPing:
				if err := c.write(ws.OpPong, p); err != nil {
					return 0, ""
				}
			case ws.OpClose:
				return closeReply(p), ""
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && msgOp == 0:
			return ws.StatusProtocolError, "continuation without a message"
		case h.OpCode != ws.OpContinuation && msgOp != 0:
			return ws.StatusProtocolError, "new message inside a fragmented one"
		case h.OpCode != ws.OpContinuation:
			msgOp = h.OpCode
		}
		// Checked on the header, before reading: a huge frame costs us nothing.
		if h.Length > limit-int64(len(msg)) {
			return ws.StatusMessageTooBig, fmt.Sprintf("message over %d bytes", limit)
		}
		off := len(msg)
		msg = append(msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(c.r, msg[off:]); err != nil {
			return 0, ""
		}
		ws.Cipher(msg[off:], h.Mask, 0)
		if !h.Fin {
			continue
		}
		if code, reason := c.handle(msg); code != 0 {
			return code, reason
		}
		msg, msgOp = nil, 0
	}
}

// closeReply is the code to answer a client's close frame with: its own code when the
// code may travel on the wire (RFC 6455 section 7.4), 1000 for none, 1002 otherwise.
func closeReply(p []byte) ws.StatusCode {
	if len(p) == 0 {
		return ws.StatusNormalClosure
	}
	code, _ := ws.ParseCloseFrameData(p)
	switch {
	case len(p) == 1:
		return ws.StatusProtocolError
	case code.IsApplicationSpec() || code.IsPrivateSpec():
		return code
	case code.IsProtocolDefined() && !code.IsProtocolReserved():
		return code
	}
	return ws.StatusProtocolError
}

// handle processes one client message: an ack, a send or a channel subscription.
func (c *wsConn) handle(p []byte) (ws.StatusCode, string) {
	if ids, ok := parseAck(p); ok {
		return c.ack(ids)
	}
	if f, ok := parseSend(p); ok {
		return c.handleSend(&f)
	}
	var f api.Frame
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return ws.StatusInvalidFramePayloadData, "malformed JSON frame"
	}
	serverOnly := len(f.Envelopes) > 0 || f.Status != 0 || f.ServerTime != 0 || f.Error != nil
	serverOnly = serverOnly || f.Channel != "" || f.Posts != nil
	switch {
	case f.Type == api.FrameSend && !serverOnly && len(f.IDs) == 0 && f.Channels == nil:
		return c.handleSend(&f)
	case f.Type == api.FrameChannelSubscribe && !serverOnly && len(f.IDs) == 0 && f.RequestID == 0 && f.Destination == nil && f.Messages == nil:
		return c.channelSubscribe(f.Channels)
	case f.Type != api.FrameAck || serverOnly || f.RequestID != 0 || f.Destination != nil || f.Messages != nil || f.Channels != nil:
		return ws.StatusUnsupportedData, `clients send only "ack", "send" and "channel_subscribe" frames, with their own fields`
	}
	return c.ack(f.IDs)
}

// ack handles an ack frame's ids.
func (c *wsConn) ack(ids []uuid.UUID) (ws.StatusCode, string) {
	if len(ids) > wsMaxAckIDs {
		return ws.StatusPolicyViolation, fmt.Sprintf("at most %d ids per ack", wsMaxAckIDs)
	}
	if len(ids) == 0 {
		return 0, ""
	}
	// The delete runs beside the reader, so that the acks of several frames (and of
	// other devices) share one group commit instead of each waiting for its own fsync.
	// The window reopens at once: envelopes after the cursor are never resent on this
	// connection, acked or not. Until the delete commits, a crash redelivers them on the
	// next connection (at least once); run waits for these deletes before the
	// connection ends, so a device that acks and reconnects finds them gone.
	if c.acks == nil {
		c.acks = make(chan struct{}, wsMaxAcks) // only the reader goroutine touches the field
	}
	select {
	case c.acks <- struct{}{}:
	case <-c.ctx.Done():
		return 0, ""
	}
	c.ackWG.Add(1)
	go func() {
		defer c.ackWG.Done()
		defer func() { <-c.acks }()
		if err := c.s.store.Ack(context.WithoutCancel(c.ctx), c.account, c.device, ids); err != nil {
			c.s.log.Error("ack failed", "err", err)
			c.close(ws.StatusInternalServerError, "internal error")
		}
	}()
	n := 0
	c.mu.Lock()
	for _, id := range ids {
		if _, ok := c.inflight[id]; ok {
			delete(c.inflight, id)
			n++
		}
	}
	if len(c.inflight) == 0 {
		c.inflight = nil // an idle connection keeps no map
	}
	// Only a drain that stopped at a full window needs the ack to go on; any other
	// stopped because the queue was empty, and a wake-up restarts it.
	resume := c.windowFull
	c.windowFull = false
	c.mu.Unlock()
	c.s.metrics.delivered.Add(float64(n))
	if resume {
		c.kick()
	}
	return 0, ""
}

// handleSend starts a send frame's work and returns at once: the reader goes on reading
// (acks, more sends) while up to wsMaxSends sends wait for their commit. When that many
// are pending the reader waits for one, and TCP pushes back on the client.
func (c *wsConn) handleSend(f *api.Frame) (ws.StatusCode, string) {
	if f.RequestID == 0 {
		return ws.StatusPolicyViolation, "a send needs a request_id"
	}
	if c.sends == nil {
		c.sends = make(chan struct{}, wsMaxSends) // only the reader goroutine touches the field
	}
	select {
	case c.sends <- struct{}{}:
	case <-c.ctx.Done():
		return 0, ""
	}
	c.s.wsWG.Add(1) // the connection's own count is held until close, so this is never from zero
	go func() {
		defer c.s.wsWG.Done()
		defer func() { <-c.sends }()
		res := api.Frame{Type: api.FrameSendResult, RequestID: f.RequestID}
		var at int64
		var err error = badRequest("destination is missing")
		if f.Destination != nil {
			// Not cancelled with the connection: a send that reached the store finishes
			// (graceful shutdown waits for it), and a retry with the same ids is a no-op.
			at, err = c.s.queue(context.WithoutCancel(c.ctx), device{account: c.account, id: c.device}, *f.Destination, f.Messages)
		}
		var he *httpError
		switch {
		case err == nil:
			if err := c.write(ws.OpText, appendSendOK(nil, f.RequestID, at)); err != nil {
				c.close(0, "")
			}
			return
		case errors.As(err, &he):
			res.Status, res.Error = he.status, &he.body
		default:
			c.s.log.Error("websocket send failed", "err", err)
			res.Status, res.Error = http.StatusInternalServerError, &api.Error{Code: api.CodeInternal, Message: "internal error"}
		}
		p, err := json.Marshal(res)
		if err == nil {
			err = c.write(ws.OpText, p)
		}
		if err != nil {
			c.close(0, "")
		}
	}()
	return 0, ""
}

// kick starts a drain, or marks the running one to look again. It never blocks.
func (c *wsConn) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.draining {
		c.dirty = true
		return
	}
	c.draining = true
	c.s.wsWG.Add(1) // the connection's own count is held until close, so this is never from zero
	go c.drain()
}

// drain pushes queued envelopes after the cursor until the queue is empty or the window
// of unacked envelopes is full; acks and wake-ups start it again.
func (c *wsConn) drain() {
	defer c.s.wsWG.Done()
	for {
		c.mu.Lock()
		c.dirty = false
		room := wsWindow - len(c.inflight)
		if c.closed || room <= 0 {
			c.draining = false
			c.windowFull = room <= 0
			c.mu.Unlock()
			return
		}
		after := c.cursor
		c.mu.Unlock()

		if c.readSize == 0 {
			c.readSize = wsFirstBatch
		}
		limit := min(room, c.readSize)
		envs, err := c.s.store.Pending(c.ctx, c.account, c.device, after, limit)
		if err != nil {
			if c.ctx.Err() == nil {
				c.s.log.Error("reading queue", "err", err)
			}
			c.finishDrain()
			c.close(ws.StatusInternalServerError, "internal error")
			return
		}
		if len(envs) > 0 {
			size := 0
			for _, e := range envs {
				size += len(e.Body)
			}
			c.readSize = max(1, min(wsBatch, wsReadBytes*len(envs)/max(size, 1)))
			// Marked in flight before they are written: the ack can race the write.
			c.mu.Lock()
			if c.inflight == nil {
				c.inflight = make(map[uuid.UUID]struct{}, len(envs))
			}
			for _, e := range envs {
				c.inflight[e.ID] = struct{}{}
			}
			c.cursor = envs[len(envs)-1].Seq
			c.mu.Unlock()
			if err := c.push(envs); err != nil {
				c.finishDrain()
				c.close(0, "")
				return
			}
			if len(envs) == limit {
				continue // maybe more
			}
			// A short read reached the end of the queue: no need to read it again to see
			// it empty. Anything enqueued since was notified after its commit, so it
			// either set dirty (checked below) or will start a drain of its own.
		}
		c.mu.Lock()
		if c.dirty {
			c.mu.Unlock()
			continue
		}
		first := !c.sentEmpty
		c.sentEmpty = true
		c.draining = false
		c.mu.Unlock()
		if first {
			p, _ := json.Marshal(api.Frame{Type: api.FrameQueueEmpty})
			if err := c.write(ws.OpText, p); err != nil {
				c.close(0, "")
			}
		}
		return
	}
}

func (c *wsConn) finishDrain() {
	c.mu.Lock()
	c.draining = false
	c.mu.Unlock()
}

// push writes envelopes in order, cut into frames of about wsFrameBytes.
func (c *wsConn) push(envs []store.Envelope) error {
	batch := make([]api.Envelope, 0, len(envs))
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		p := appendEnvelopes(make([]byte, 0, 64+size*4/3+len(batch)*100), batch)
		batch, size = batch[:0], 0
		return c.write(ws.OpText, p)
	}
	for _, e := range envs {
		if size > 0 && size+len(e.Body) > wsFrameBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, api.Envelope{ID: e.ID, ServerTime: e.ServerTime.UnixMilli(), Body: e.Body})
		size += len(e.Body)
	}
	return flush()
}

// disconnectAccount closes this node's connections of an account (policy violation,
// 1008): its devices were replaced. Other nodes learn of it through the store when those
// devices next authenticate (issue 7 carries it over NATS).
func (s *Server) disconnectAccount(account uuid.UUID, reason string) {
	// Every caller replaced the account's devices: cached lists and credentials are stale.
	s.devices.forget(account)
	s.creds.forget(account)
	s.wsMu.Lock()
	var conns []*wsConn
	for c := range s.ws {
		if c.account == account {
			conns = append(conns, c)
		}
	}
	s.wsMu.Unlock()
	for _, c := range conns {
		c.close(ws.StatusPolicyViolation, reason)
	}
}

// closeWebSockets tells every connection the server is going away and waits for their
// goroutines, or for ctx.
func (s *Server) closeWebSockets(ctx context.Context) error {
	s.wsMu.Lock()
	s.wsClosing = true
	conns := make([]*wsConn, 0, len(s.ws))
	for c := range s.ws {
		conns = append(conns, c)
	}
	s.wsMu.Unlock()
	for _, c := range conns {
		c.close(ws.StatusGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.wsWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
