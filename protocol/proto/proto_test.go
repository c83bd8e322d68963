package proto

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

type message interface {
	Marshal([]byte) []byte
	Unmarshal([]byte) error
}

func samples() map[string]message {
	k := bytes.Repeat([]byte{5}, 33)
	return map[string]message{
		"SignalMessage": &SignalMessage{RatchetKey: k, Counter: 7, PreviousCounter: 3, Ciphertext: []byte("ct"), Addresses: make([]byte, 36)},
		"PreKeySignalMessage": &PreKeySignalMessage{RegistrationID: 42, PreKeyID: 1, HasPreKeyID: true, SignedPreKeyID: 2,
			KyberPreKeyID: 3, HasKyberPreKeyID: true, KyberCiphertext: []byte{8, 1}, BaseKey: k, IdentityKey: k, Message: []byte{0x44, 1}},
		"Record": &Record{Current: &Session{SessionVersion: 4, RootKey: []byte("r"), PreviousCounter: 2,
			SenderChain:        &Chain{SenderRatchetKey: k, SenderRatchetKeyPrivate: []byte("p"), ChainKey: &ChainKey{Index: 3, Key: []byte("c")}},
			ReceiverChains:     []Chain{{SenderRatchetKey: k, ChainKey: &ChainKey{Key: []byte("c")}, MessageKeys: []MessageKey{{Index: 1, Seed: []byte("s")}, {Index: 0, Seed: []byte("t")}}}},
			PendingPreKey:      &PendingPreKey{HasPreKeyID: true, SignedPreKeyID: -1, BaseKey: k, Timestamp: 99},
			PendingKyberPreKey: &PendingKyberPreKey{PreKeyID: 5, Ciphertext: []byte{8}}, AliceBaseKey: k, LocalRegistrationID: 1, RemoteRegistrationID: 2},
			Previous: [][]byte{(&Session{SessionVersion: 4}).Marshal(nil)}},
		"KeyPairRecord": &KeyPairRecord{ID: 9, PublicKey: k, PrivateKey: []byte("priv")},
		"Bundle": &Bundle{RegistrationID: 1, DeviceID: 2, PreKeyID: 3, PreKey: k, SignedPreKeyID: 4, SignedPreKey: k,
			SignedPreKeySignature: []byte("s"), KyberPreKeyID: 5, KyberPreKey: []byte{8}, KyberPreKeySignature: []byte("t"), IdentityKey: k},
		"SignedKeyRecord": &SignedKeyRecord{ID: 9, PublicKey: k, PrivateKey: []byte("priv"), Signature: []byte("sig"), Timestamp: 1 << 40},
	}
}

func fresh(name string) message {
	return reflect.New(reflect.TypeOf(samples()[name]).Elem()).Interface().(message)
}

func TestRoundTrip(t *testing.T) {
	for name, m := range samples() {
		t.Run(name, func(t *testing.T) {
			b := m.Marshal(nil)
			got := fresh(name)
			if err := got.Unmarshal(b); err != nil {
				t.Fatalf("Unmarshal(Marshal(%+v)) = %v", m, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("Unmarshal(Marshal(m)) = %+v, want %+v", got, m)
			}
			if again := got.Marshal(nil); !bytes.Equal(again, b) {
				t.Errorf("Marshal(Unmarshal(b)) = %x, want %x", again, b)
			}
		})
	}
}

func TestStrict(t *testing.T) {
	good := samples()["SignalMessage"].Marshal(nil)
	tests := []struct {
		name string
		in   []byte
	}{
		{"unknown field", append(bytes.Clone(good), 0x38, 1)},     // field 7 varint
		{"big field number", append(bytes.Clone(good), 0xf8, 7)},  // field 127
		{"repeated singular", append(bytes.Clone(good), 0x10, 1)}, // counter again
		{"wrong wire type", append([]byte{0x0d, 0, 0, 0, 0}, good...)},
		{"truncated", good[:len(good)-1]},
		{"counter overflow", append(bytes.Clone(good), 0x18, 0x80, 0x80, 0x80, 0x80, 0x10)},
		{"missing ratchet key", (&SignalMessage{Counter: 1, Ciphertext: []byte{1}}).Marshal(nil)[2:]},
		{"empty", nil},
	}
	for _, tt := range tests {
		var m SignalMessage
		if err := m.Unmarshal(tt.in); !errors.Is(err, ErrInvalid) {
			t.Errorf("SignalMessage.Unmarshal(%s) = %v, want ErrInvalid", tt.name, err)
		}
	}
}

// fuzzRoundTrip checks the property every parser must have: bytes either fail to
// decode with ErrInvalid, or decode to a value that encodes and decodes to itself.
func fuzzRoundTrip(t *testing.T, name string, in []byte) {
	m := fresh(name)
	if err := m.Unmarshal(in); err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s.Unmarshal = %v, want ErrInvalid", name, err)
		}
		return
	}
	out := m.Marshal(nil)
	m2 := fresh(name)
	if err := m2.Unmarshal(out); err != nil {
		t.Fatalf("%s.Unmarshal(Marshal(Unmarshal(%x))) = %v", name, in, err)
	}
	// Equal values encode equally; comparing encodings also treats an empty field
	// that was present (proto3) as equal to an absent one, as protobuf does.
	if again := m2.Marshal(nil); !bytes.Equal(again, out) {
		t.Fatalf("%s round trip: %x != %x", name, again, out)
	}
}

// seed adds the sample and every file in ../testdata/<dir> to f, minus the framing
// (version byte, trailing MAC or signature) around the protobuf.
func seed(f *testing.F, name, dir string, front, back int) {
	f.Add(samples()[name].Marshal(nil))
	files, _ := filepath.Glob(filepath.Join("..", "testdata", dir, "*.bin"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) >= front+back {
			f.Add(b[front : len(b)-back])
		}
	}
}

func FuzzSignalMessage(f *testing.F) {
	seed(f, "SignalMessage", "signalmessage", 1, 8)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzRoundTrip(t, "SignalMessage", b) })
}

func FuzzPreKeySignalMessage(f *testing.F) {
	seed(f, "PreKeySignalMessage", "prekeysignalmessage", 1, 0)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzRoundTrip(t, "PreKeySignalMessage", b) })
}

func FuzzRecord(f *testing.F) {
	seed(f, "Record", "record", 0, 0)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzRoundTrip(t, "Record", b) })
}

func FuzzBundle(f *testing.F) {
	seed(f, "Bundle", "bundle", 0, 0)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzRoundTrip(t, "Bundle", b) })
}
