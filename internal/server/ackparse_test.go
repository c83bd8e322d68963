package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
)

// strictAck is what the decoder's path makes of p: the ids of a valid ack frame.
func strictAck(p []byte) ([]uuid.UUID, bool) {
	var f api.Frame
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || f.Type != api.FrameAck || f.Envelopes != nil || f.Messages != nil ||
		f.RequestID != 0 || f.Destination != nil || f.Status != 0 || f.ServerTime != 0 || f.Error != nil {
		return nil, false
	}
	return f.IDs, true
}

func TestParseAck(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	canonical := func(ids ...uuid.UUID) string {
		p, _ := json.Marshal(api.Frame{Type: api.FrameAck, IDs: ids})
		return string(p)
	}
	many := make([]uuid.UUID, wsMaxAckIDs+1)
	for i := range many {
		many[i] = uuid.New()
	}
	tests := []struct {
		in   string
		fast bool // taken by the fast path
	}{
		{canonical(a), true},
		{canonical(a, b), true},
		{canonical(many[:wsMaxAckIDs]...), true},
		{`{"type":"ack","ids":["` + strings.ToUpper(a.String()) + `"]}`, true},
		{canonical(many...), false}, // over the limit: the decoder's path refuses it
		{`{"type":"ack"}`, false},
		{`{"type":"ack","ids":[]}`, false},
		{`{"ids":["` + a.String() + `"],"type":"ack"}`, false},
		{`{"type":"ack", "ids":["` + a.String() + `"]}`, false},
		{`{"type":"ack","ids":["` + a.String() + `" ,"` + b.String() + `"]}`, false},
		{`{"type":"ack","ids":["` + a.String() + `";"` + b.String() + `"]}`, false},
		{`{"type":"ack","ids":["` + a.String()[:35] + `x"]}`, false},
		{`{"type":"ack","ids":["\u0030` + a.String()[6:] + `"]}`, false},
		{`{"type":"ack","ids":["` + strings.ReplaceAll(a.String(), "-", "") + `1234"]}`, false},
		{`{"type":"ack","ids":["` + a.String() + `"]}x`, false},
		{`{"type":"ack","ids":["` + a.String() + `"],"x":1}`, false},
		{`{"type":"send","ids":["` + a.String() + `"]}`, false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ids, ok := parseAck([]byte(tt.in))
			if ok != tt.fast {
				t.Fatalf("parseAck(%.80s) ok = %v, want %v", tt.in, ok, tt.fast)
			}
			if !ok {
				return
			}
			want, valid := strictAck([]byte(tt.in))
			if !valid || !slices.Equal(ids, want) {
				t.Errorf("parseAck(%.80s) = %v, want the decoder's %v (valid %v)", tt.in, ids, want, valid)
			}
		})
	}
}

// FuzzParseAck: whatever the fast path accepts, the strict decoder accepts with the same ids.
func FuzzParseAck(f *testing.F) {
	a, b := uuid.New(), uuid.New()
	f.Add([]byte(`{"type":"ack","ids":["` + a.String() + `","` + b.String() + `"]}`))
	f.Add([]byte(`{"type":"ack","ids":["` + a.String() + `"]}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		ids, ok := parseAck(p)
		if !ok {
			return
		}
		want, valid := strictAck(p)
		if !valid || !slices.Equal(ids, want) {
			t.Errorf("parseAck(%q) = %v, want the decoder's %v (valid %v)", p, ids, want, valid)
		}
	})
}
