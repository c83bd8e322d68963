package kt_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/bastionchat/bastion/kt"
	"github.com/google/uuid"
)

type entryVector struct {
	Name        string `json:"name"`
	Hex         string `json:"hex"`
	Account     string `json:"account"`
	Device      uint32 `json:"device"`
	IdentityKey string `json:"identity_key"`
	Kind        uint8  `json:"kind"`
	Index       string `json:"index"`
	State       uint8  `json:"state"`
	Sequence    uint64 `json:"sequence"`
	TimeMS      int64  `json:"time_ms"`
}

func loadEntryVectors(t testing.TB) []entryVector {
	t.Helper()
	data, err := os.ReadFile("testdata/entries.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Entries []entryVector `json:"entries"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Entries
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vectorEntry builds the entry a vector describes field by field.
func vectorEntry(t *testing.T, v entryVector) kt.Entry {
	acct := uuid.MustParse(v.Account)
	tm := time.UnixMilli(v.TimeMS).UTC()
	if v.IdentityKey != "" {
		d := kt.DeviceBinding{Account: acct, Device: v.Device, State: kt.State(v.State), Sequence: v.Sequence, Time: tm}
		copy(d.IdentityKey[:], mustHex(t, v.IdentityKey))
		return d
	}
	l := kt.LookupBinding{Kind: kt.LookupKind(v.Kind), Account: acct, State: kt.State(v.State), Sequence: v.Sequence, Time: tm}
	copy(l.Index[:], mustHex(t, v.Index))
	return l
}

// TestEntryVectors pins the encoding: each hand-built vector marshals from
// its fields and parses back to them.
func TestEntryVectors(t *testing.T) {
	for _, v := range loadEntryVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			e := vectorEntry(t, v)
			got, err := kt.Marshal(e)
			if err != nil {
				t.Fatalf("Marshal(%+v) error: %v", e, err)
			}
			if hex.EncodeToString(got) != v.Hex {
				t.Errorf("Marshal(%+v) = %x, want %s", e, got, v.Hex)
			}
			parsed, err := kt.ParseEntry(mustHex(t, v.Hex))
			if err != nil {
				t.Fatalf("ParseEntry(%s) error: %v", v.Hex, err)
			}
			if parsed != e {
				t.Errorf("ParseEntry(%s) = %+v, want %+v", v.Hex, parsed, e)
			}
			if parsed.AccountID() != uuid.MustParse(v.Account) {
				t.Errorf("AccountID() = %v, want %s", parsed.AccountID(), v.Account)
			}
		})
	}
}

func validDevice() kt.DeviceBinding {
	d := kt.DeviceBinding{
		Account:  uuid.MustParse("0f8e3a4c-5d6b-4e7f-8a9b-0c1d2e3f4a5b"),
		Device:   1,
		State:    kt.StateAdded,
		Sequence: 1,
		Time:     time.UnixMilli(1767225600123).UTC(),
	}
	d.IdentityKey[0] = 0x05
	return d
}

func validLookup() kt.LookupBinding {
	return kt.LookupBinding{
		Kind:     kt.KindUsername,
		Account:  uuid.MustParse("0f8e3a4c-5d6b-4e7f-8a9b-0c1d2e3f4a5b"),
		State:    kt.StateAdded,
		Sequence: 2,
		Time:     time.UnixMilli(1767225600123).UTC(),
	}
}

func TestMarshalRejects(t *testing.T) {
	tests := []struct {
		name string
		e    kt.Entry
	}{
		{"nil", nil},
		{"device nil account", func() kt.Entry { d := validDevice(); d.Account = uuid.Nil; return d }()},
		{"device id 0", func() kt.Entry { d := validDevice(); d.Device = 0; return d }()},
		{"device key type", func() kt.Entry { d := validDevice(); d.IdentityKey[0] = 0x06; return d }()},
		{"device state 0", func() kt.Entry { d := validDevice(); d.State = 0; return d }()},
		{"device state 4", func() kt.Entry { d := validDevice(); d.State = 4; return d }()},
		{"device time before 1970", func() kt.Entry { d := validDevice(); d.Time = time.Unix(-1, 0); return d }()},
		{"lookup kind 0", func() kt.Entry { l := validLookup(); l.Kind = 0; return l }()},
		{"lookup kind 3", func() kt.Entry { l := validLookup(); l.Kind = 3; return l }()},
		{"lookup nil account", func() kt.Entry { l := validLookup(); l.Account = uuid.Nil; return l }()},
		{"lookup changed", func() kt.Entry { l := validLookup(); l.State = kt.StateChanged; return l }()},
		{"lookup state 0", func() kt.Entry { l := validLookup(); l.State = 0; return l }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := kt.Marshal(tt.e); err == nil {
				t.Errorf("Marshal(%+v) = %x, want error", tt.e, b)
			}
		})
	}
}

func TestParseEntryRejects(t *testing.T) {
	dev, err := kt.Marshal(validDevice())
	if err != nil {
		t.Fatal(err)
	}
	look, err := kt.Marshal(validLookup())
	if err != nil {
		t.Fatal(err)
	}
	with := func(b []byte, i int, v byte) []byte {
		b = bytes.Clone(b)
		b[i] = v
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"one byte", []byte{1}},
		{"version 0", with(dev, 0, 0)},
		{"version 2", with(dev, 0, 2)},
		{"type 0", with(dev, 1, 0)},
		{"type 3", with(dev, 1, 3)},
		{"device short", dev[:len(dev)-1]},
		{"device long", append(bytes.Clone(dev), 0)},
		{"device as lookup", with(dev, 1, 2)},
		{"lookup as device", with(look, 1, 1)},
		{"lookup short", look[:len(look)-1]},
		{"lookup long", append(bytes.Clone(look), 0)},
		{"device id 0", func() []byte { b := bytes.Clone(dev); copy(b[18:22], []byte{0, 0, 0, 0}); return b }()},
		{"device key type", with(dev, 22, 0x04)},
		{"device state 0", with(dev, 55, 0)},
		{"device state 9", with(dev, 55, 9)},
		{"device time overflow", with(dev, 64, 0x80)},
		{"lookup kind 0", with(look, 2, 0)},
		{"lookup state changed", with(look, 83, 2)},
		{"lookup time overflow", with(look, 92, 0xff)},
		{"lookup nil account", func() []byte { b := bytes.Clone(look); copy(b[67:83], make([]byte, 16)); return b }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e, err := kt.ParseEntry(tt.in); err == nil {
				t.Errorf("ParseEntry(%x) = %+v, want error", tt.in, e)
			}
		})
	}
}

func TestMarshalTruncatesTimeToMillisecond(t *testing.T) {
	d := validDevice()
	d.Time = d.Time.Add(999 * time.Microsecond)
	b, err := kt.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kt.ParseEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.(kt.DeviceBinding).Time, validDevice().Time; !got.Equal(want) {
		t.Errorf("ParseEntry(Marshal(time+999µs)).Time = %v, want %v", got, want)
	}
}

// FuzzParseEntry checks that every input either fails to parse or parses to
// an entry that marshals back to exactly the same bytes.
func FuzzParseEntry(f *testing.F) {
	for _, v := range loadEntryVectors(f) {
		f.Add(mustHex(f, v.Hex))
	}
	f.Add([]byte{1, 1})
	f.Add([]byte{1, 2, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := kt.ParseEntry(in)
		if err != nil {
			return
		}
		out, err := kt.Marshal(e)
		if err != nil {
			t.Fatalf("Marshal(ParseEntry(%x)) error: %v", in, err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("Marshal(ParseEntry(%x)) = %x", in, out)
		}
	})
}
