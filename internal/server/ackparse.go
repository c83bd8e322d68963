package server

import (
	"bytes"

	"github.com/google/uuid"
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
