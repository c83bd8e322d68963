package server

import (
	"bytes"
	"encoding/base64"
	"strconv"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
)

// parseAck reads an ack frame in exactly the form clients write it,
// {"type":"ack","ids":["<uuid>",...]}, without reflection: acks are half the frames a
// busy connection reads, and encoding/json spends most of its time there on UUIDs. ok is
// false for anything else (other spacing, field order, escapes), which then takes the
// strict decoder, so the fast path accepts nothing the decoder would refuse.
func parseAck(p []byte) (ids []uuid.UUID, ok bool) {
	const prefix, suffix = `{"type":"ack","ids":[`, `]}`
	rest, found := bytes.CutPrefix(p, []byte(prefix))
	if !found {
		return nil, false
	}
	rest, found = bytes.CutSuffix(rest, []byte(suffix))
	if !found || len(rest) == 0 {
		return nil, false
	}
	const item = 1 + 36 + 1 // a quoted canonical UUID
	if (len(rest)+1)%(item+1) != 0 {
		return nil, false
	}
	n := (len(rest) + 1) / (item + 1)
	if n > wsMaxAckIDs {
		return nil, false // the decoder's path answers with the limit's close code
	}
	ids = make([]uuid.UUID, n)
	for i := range n {
		q := rest[i*(item+1):]
		if q[0] != '"' || q[item-1] != '"' || (i < n-1 && q[item] != ',') {
			return nil, false
		}
		id, err := uuid.ParseBytes(q[1 : item-1])
		if err != nil {
			return nil, false
		}
		ids[i] = id
	}
	return ids, true
}

// parseSend reads a send frame in exactly the form encoding/json writes api.Frame:
// {"type":"send","request_id":N,"destination":"<uuid>","messages":[{"device_id":N,
// "registration_id":N,"id":"<uuid>","body":"<base64>"},...]}. Like parseAck it returns
// ok false for anything else, which the strict decoder then reads; a fuzz test holds
// the two to the same answer.
func parseSend(p []byte) (f api.Frame, ok bool) {
	s := scanner{p: p, ok: true}
	s.lit(`{"type":"send","request_id":`)
	f.Type = api.FrameSend
	f.RequestID = s.uint(64)
	s.lit(`,"destination":`)
	dest := s.uuid()
	f.Destination = &dest
	s.lit(`,"messages":`)
	f.Messages = s.envelopes()
	s.lit(`}`)
	if !s.ok || len(s.p) != 0 {
		return api.Frame{}, false
	}
	return f, true
}

// envelopes consumes a JSON array of OutgoingEnvelope in encoding/json's layout: the
// "messages" of a send frame and of each recipient of a multi-recipient send.
func (s *scanner) envelopes() []api.OutgoingEnvelope {
	var out []api.OutgoingEnvelope
	s.lit(`[`)
	for s.ok {
		var m api.OutgoingEnvelope
		s.lit(`{"device_id":`)
		m.DeviceID = uint32(s.uint(32))
		s.lit(`,"registration_id":`)
		m.RegistrationID = uint32(s.uint(32))
		s.lit(`,"id":`)
		m.ID = s.uuid()
		s.lit(`,"body":`)
		m.Body = s.base64()
		s.lit(`}`)
		out = append(out, m)
		if !s.ok || len(s.p) == 0 || s.p[0] != ',' {
			break
		}
		s.p = s.p[1:]
	}
	s.lit(`]`)
	return out
}

// scanner consumes a canonical JSON text; ok turns false at the first surprise.
type scanner struct {
	p  []byte
	ok bool
}

func (s *scanner) lit(l string) {
	if s.ok && len(s.p) >= len(l) && string(s.p[:len(l)]) == l {
		s.p = s.p[len(l):]
		return
	}
	s.ok = false
}

// uint reads a JSON number that is an unsigned integer of the given size.
func (s *scanner) uint(bits int) uint64 {
	n := 0
	for n < len(s.p) && s.p[n] >= '0' && s.p[n] <= '9' {
		n++
	}
	if !s.ok || n == 0 || (n > 1 && s.p[0] == '0') {
		s.ok = false
		return 0
	}
	v, err := strconv.ParseUint(string(s.p[:n]), 10, bits)
	if err != nil {
		s.ok = false
		return 0
	}
	s.p = s.p[n:]
	return v
}

func (s *scanner) uuid() uuid.UUID {
	if !s.ok || len(s.p) < 38 || s.p[0] != '"' || s.p[37] != '"' {
		s.ok = false
		return uuid.UUID{}
	}
	id, err := uuid.ParseBytes(s.p[1:37])
	if err != nil {
		s.ok = false
		return uuid.UUID{}
	}
	s.p = s.p[38:]
	return id
}

// base64 reads a quoted string of the standard alphabet with padding, as encoding/json
// writes a []byte.
func (s *scanner) base64() []byte {
	if !s.ok || len(s.p) == 0 || s.p[0] != '"' {
		s.ok = false
		return nil
	}
	end := bytes.IndexByte(s.p[1:], '"')
	if end < 0 {
		s.ok = false
		return nil
	}
	enc := s.p[1 : 1+end]
	for _, c := range enc {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			s.ok = false
			return nil
		}
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(b, enc)
	if err != nil {
		s.ok = false
		return nil
	}
	s.p = s.p[2+end:]
	return b[:n]
}

// appendEnvelopes writes the envelopes frame for envs exactly as json.Marshal writes
// api.Frame{Type: "envelopes", Envelopes: ...}, without reflection (a test compares the
// two byte for byte).
func appendEnvelopes(b []byte, envs []api.Envelope) []byte {
	b = append(b, `{"type":"envelopes","envelopes":[`...)
	for i, e := range envs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = appendUUID(b, e.ID)
		b = append(b, `","server_time":`...)
		b = strconv.AppendInt(b, e.ServerTime, 10)
		b = append(b, `,"body":"`...)
		b = base64.StdEncoding.AppendEncode(b, e.Body)
		b = append(b, `"}`...)
	}
	return append(b, `]}`...)
}

// appendSendOK writes a successful send_result as json.Marshal writes it.
func appendSendOK(b []byte, requestID uint64, serverTime int64) []byte {
	b = append(b, `{"type":"send_result","request_id":`...)
	b = strconv.AppendUint(b, requestID, 10)
	b = append(b, `,"status":200,"server_time":`...)
	b = strconv.AppendInt(b, serverTime, 10)
	return append(b, '}')
}

func appendUUID(b []byte, id uuid.UUID) []byte {
	var s [36]byte
	const hex = "0123456789abcdef"
	j := 0
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hex[c>>4], hex[c&0xf]
		j += 2
	}
	return append(b, s[:]...)
}
