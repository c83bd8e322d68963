package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
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

// strictFrame is what the decoder's path makes of p.
func strictFrame(p []byte) (api.Frame, bool) {
	var f api.Frame
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	err := dec.Decode(&f)
	return f, err == nil
}

func TestParseSend(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	canonical := func(f api.Frame) string {
		p, _ := json.Marshal(f)
		return string(p)
	}
	msg := func(dev, reg uint32, body []byte) api.OutgoingEnvelope {
		return api.OutgoingEnvelope{DeviceID: dev, RegistrationID: reg, ID: uuid.New(), Body: body}
	}
	send := func(id uint64, ms ...api.OutgoingEnvelope) api.Frame {
		return api.Frame{Type: api.FrameSend, RequestID: id, Destination: &a, Messages: ms}
	}
	one := canonical(send(7, msg(1, 1234, []byte("opaque"))))
	tests := []struct {
		in   string
		fast bool
	}{
		{one, true},
		{canonical(send(1<<63, msg(1, 1, []byte{0}), msg(4294967295, 16380, make([]byte, 1000)))), true},
		{canonical(send(7, msg(1, 1, []byte("x")), msg(2, 2, []byte("yy")), msg(3, 3, []byte("zzz")))), true},
		{strings.Replace(one, `"body":"b3BhcXVl"`, `"body":""`, 1), true},
		{strings.Replace(one, `"request_id":7`, `"request_id":0`, 1), true},
		{canonical(send(7)), false}, // no messages: the field is omitted
		{strings.Replace(one, `"device_id":1`, `"device_id":4294967296`, 1), false},
		{strings.Replace(one, `"device_id":1`, `"device_id":01`, 1), false},
		{strings.Replace(one, `"device_id":1`, `"device_id":-1`, 1), false},
		{strings.Replace(one, `"device_id":1`, `"device_id":1.0`, 1), false},
		{strings.Replace(one, `"body":"b3BhcXVl"`, `"body":"b3BhcXVl\n"`, 1), false},
		{strings.Replace(one, `"body":"b3BhcXVl"`, `"body":"b3BhcXV"`, 1), false},
		{strings.Replace(one, `"body":"b3BhcXVl"`, `"body":null`, 1), false},
		{strings.Replace(one, `"destination":"`+a.String(), `"destination":"`+b.String()[:35]+"g", 1), false},
		{strings.Replace(one, `{"type":"send",`, `{"type":"send", `, 1), false},
		{strings.Replace(one, `]}`, `],"x":1}`, 1), false},
		{one + " ", false},
		{strings.Replace(one, `"send"`, `"ack"`, 1), false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			f, ok := parseSend([]byte(tt.in))
			if ok != tt.fast {
				t.Fatalf("parseSend(%.100s) ok = %v, want %v", tt.in, ok, tt.fast)
			}
			if !ok {
				return
			}
			want, valid := strictFrame([]byte(tt.in))
			if !valid || !reflect.DeepEqual(f, want) {
				t.Errorf("parseSend(%.100s) = %+v, want the decoder's %+v (valid %v)", tt.in, f, want, valid)
			}
		})
	}
}

// FuzzParseSend: whatever the fast path accepts, the strict decoder accepts as the same frame.
func FuzzParseSend(f *testing.F) {
	a := uuid.New()
	p, _ := json.Marshal(api.Frame{Type: api.FrameSend, RequestID: 9, Destination: &a, Messages: []api.OutgoingEnvelope{
		{DeviceID: 1, RegistrationID: 2, ID: uuid.New(), Body: []byte("opaque ciphertext")},
		{DeviceID: 3, RegistrationID: 4, ID: uuid.New(), Body: []byte{0xff}}}})
	f.Add(p)
	f.Fuzz(func(t *testing.T, p []byte) {
		got, ok := parseSend(p)
		if !ok {
			return
		}
		want, valid := strictFrame(p)
		if !valid || !reflect.DeepEqual(got, want) {
			t.Errorf("parseSend(%q) = %+v, want the decoder's %+v (valid %v)", p, got, want, valid)
		}
	})
}

func TestAppendFramesMatchJSON(t *testing.T) {
	envs := []api.Envelope{
		{ID: uuid.New(), ServerTime: 1795457221176, Body: []byte("opaque")},
		{ID: uuid.New(), ServerTime: 0, Body: []byte{}},
		{ID: uuid.New(), ServerTime: -1, Body: make([]byte, 1000)},
		{ID: uuid.Nil, ServerTime: 1 << 62, Body: []byte{0xff, 0xfe, 0xfd, 0xfc}},
	}
	for n := 1; n <= len(envs); n++ {
		want, _ := json.Marshal(api.Frame{Type: api.FrameEnvelopes, Envelopes: envs[:n]})
		if got := appendEnvelopes(nil, envs[:n]); !bytes.Equal(got, want) {
			t.Errorf("appendEnvelopes(%d envelopes) = %s, want %s", n, got, want)
		}
	}
	for _, tt := range []struct {
		id uint64
		at int64
	}{{1, 1795457221176}, {1<<64 - 1, 7}, {42, -5}} {
		want, _ := json.Marshal(api.Frame{Type: api.FrameSendResult, RequestID: tt.id, Status: 200, ServerTime: tt.at})
		if got := appendSendOK(nil, tt.id, tt.at); !bytes.Equal(got, want) {
			t.Errorf("appendSendOK(%d, %d) = %s, want %s", tt.id, tt.at, got, want)
		}
	}
}
