package kt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"
)

// The entry encoding. Every entry starts with a version byte and a type byte
// and then has fixed-size fields only, so that its length follows from its
// type and no two entries can be read two ways. All integers are big-endian.
//
//	device binding, 72 bytes:
//	  [0]      version = 1
//	  [1]      type = 1 (device binding)
//	  [2:18]   account id, a UUID
//	  [18:22]  device id, uint32, nonzero
//	  [22:55]  identity key, 33 bytes: 0x05 then the 32-byte Curve25519 key
//	  [55]     state: 1 added, 2 changed, 3 removed
//	  [56:64]  sequence, uint64
//	  [64:72]  time, uint64 Unix milliseconds
//
//	lookup binding, 100 bytes:
//	  [0]      version = 1
//	  [1]      type = 2 (lookup binding)
//	  [2]      kind: 1 phone number, 2 username
//	  [3:67]   index: the 64-byte VRF output for the lookup key
//	  [67:83]  account id, a UUID
//	  [83]     state: 1 added, 3 removed
//	  [84:92]  sequence, uint64
//	  [92:100] time, uint64 Unix milliseconds
const (
	// EntryVersion is the only version of the entry encoding.
	EntryVersion = 1

	// DeviceBindingSize is the encoded size of a [DeviceBinding].
	DeviceBindingSize = 72
	// LookupBindingSize is the encoded size of a [LookupBinding].
	LookupBindingSize = 100

	// IdentityKeySize is the size of a serialized identity public key.
	IdentityKeySize = 33
	// LookupIndexSize is the size of a lookup index, the VRF output beta
	// of ECVRF-EDWARDS25519-SHA512-TAI (hLen = 64, RFC 9381 Section 5.5).
	LookupIndexSize = 64

	// identityKeyType is the type byte of a serialized Curve25519 public
	// key in the Signal Protocol (DJB_TYPE).
	identityKeyType = 0x05
)

// EntryType says which kind of binding an entry holds. The zero value is
// invalid.
type EntryType uint8

// The entry types.
const (
	TypeDeviceBinding EntryType = 1
	TypeLookupBinding EntryType = 2
)

// State says what happened to a binding. The zero value is invalid.
type State uint8

// The states of a binding. A lookup binding is only ever added or removed;
// moving a phone number to another account is a removal and an addition.
const (
	StateAdded   State = 1
	StateChanged State = 2 // the device's identity key was replaced
	StateRemoved State = 3
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateAdded:
		return "added"
	case StateChanged:
		return "changed"
	case StateRemoved:
		return "removed"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// LookupKind says what a lookup key is. The zero value is invalid.
type LookupKind uint8

// The kinds of lookup key.
const (
	KindPhoneNumber LookupKind = 1
	KindUsername    LookupKind = 2
)

// String returns the kind's name.
func (k LookupKind) String() string {
	switch k {
	case KindPhoneNumber:
		return "phone number"
	case KindUsername:
		return "username"
	}
	return fmt.Sprintf("LookupKind(%d)", uint8(k))
}

// An Entry is one record of the key transparency log: a [DeviceBinding] or
// a [LookupBinding].
type Entry interface {
	// Type returns the entry's type.
	Type() EntryType
	// AccountID returns the account the entry is about.
	AccountID() uuid.UUID
	appendEntry(b []byte) ([]byte, error)
}

var (
	_ Entry = DeviceBinding{}
	_ Entry = LookupBinding{}
)

// DeviceBinding records that a device of an account has (or no longer has)
// an identity key.
type DeviceBinding struct {
	Account     uuid.UUID
	Device      uint32
	IdentityKey [IdentityKeySize]byte
	State       State
	// Sequence counts the account's entries in the log, device and lookup
	// bindings alike, from 1; a gap or a repeat is visible to the owner.
	Sequence uint64
	// Time is when the server accepted the change, kept to the millisecond.
	Time time.Time
}

// Type returns [TypeDeviceBinding].
func (DeviceBinding) Type() EntryType { return TypeDeviceBinding }

// AccountID returns the account the binding is about.
func (d DeviceBinding) AccountID() uuid.UUID { return d.Account }

func (d DeviceBinding) appendEntry(b []byte) ([]byte, error) {
	if d.Account == uuid.Nil {
		return nil, errors.New("device binding: nil account id")
	}
	if d.Device == 0 {
		return nil, errors.New("device binding: device id 0")
	}
	if d.IdentityKey[0] != identityKeyType {
		return nil, fmt.Errorf("device binding: identity key type %#x, want %#x", d.IdentityKey[0], identityKeyType)
	}
	if d.State != StateAdded && d.State != StateChanged && d.State != StateRemoved {
		return nil, fmt.Errorf("device binding: invalid state %d", d.State)
	}
	ms, err := encodeTime(d.Time)
	if err != nil {
		return nil, fmt.Errorf("device binding: %w", err)
	}
	b = append(b, EntryVersion, byte(TypeDeviceBinding))
	b = append(b, d.Account[:]...)
	b = binary.BigEndian.AppendUint32(b, d.Device)
	b = append(b, d.IdentityKey[:]...)
	b = append(b, byte(d.State))
	b = binary.BigEndian.AppendUint64(b, d.Sequence)
	b = binary.BigEndian.AppendUint64(b, ms)
	return b, nil
}

// LookupBinding records that a lookup key (a phone number or a username),
// known in the log only by its VRF output, points (or no longer points) to
// an account.
type LookupBinding struct {
	Kind LookupKind
	// Index is the VRF output for the lookup key; see [LookupAlpha] and
	// [VerifyLookup]. The key itself is never in the log.
	Index    [LookupIndexSize]byte
	Account  uuid.UUID
	State    State
	Sequence uint64 // as in [DeviceBinding]
	Time     time.Time
}

// Type returns [TypeLookupBinding].
func (LookupBinding) Type() EntryType { return TypeLookupBinding }

// AccountID returns the account the binding points to.
func (l LookupBinding) AccountID() uuid.UUID { return l.Account }

func (l LookupBinding) appendEntry(b []byte) ([]byte, error) {
	if l.Kind != KindPhoneNumber && l.Kind != KindUsername {
		return nil, fmt.Errorf("lookup binding: invalid kind %d", l.Kind)
	}
	if l.Account == uuid.Nil {
		return nil, errors.New("lookup binding: nil account id")
	}
	if l.State != StateAdded && l.State != StateRemoved {
		return nil, fmt.Errorf("lookup binding: invalid state %d", l.State)
	}
	ms, err := encodeTime(l.Time)
	if err != nil {
		return nil, fmt.Errorf("lookup binding: %w", err)
	}
	b = append(b, EntryVersion, byte(TypeLookupBinding), byte(l.Kind))
	b = append(b, l.Index[:]...)
	b = append(b, l.Account[:]...)
	b = append(b, byte(l.State))
	b = binary.BigEndian.AppendUint64(b, l.Sequence)
	b = binary.BigEndian.AppendUint64(b, ms)
	return b, nil
}

func encodeTime(t time.Time) (uint64, error) {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0, fmt.Errorf("time %v before 1970", t)
	}
	return uint64(ms), nil
}

func decodeTime(b []byte) (time.Time, error) {
	ms := binary.BigEndian.Uint64(b)
	if ms > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("time %d out of range", ms)
	}
	return time.UnixMilli(int64(ms)).UTC(), nil
}

// Marshal encodes an entry as the bytes the log stores and hashes. It fails
// on an entry that [ParseEntry] would reject, so every marshaled entry
// parses back to itself (with Time rounded down to the millisecond).
func Marshal(e Entry) ([]byte, error) {
	if e == nil {
		return nil, errors.New("kt: marshaling nil entry")
	}
	b, err := e.appendEntry(nil)
	if err != nil {
		return nil, fmt.Errorf("kt: %w", err)
	}
	return b, nil
}

// ParseEntry decodes an entry encoded by [Marshal]. It returns a
// [DeviceBinding] or a [LookupBinding] value, and an error for anything that
// is not exactly one valid entry.
func ParseEntry(b []byte) (Entry, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("kt: entry is %d bytes", len(b))
	}
	if b[0] != EntryVersion {
		return nil, fmt.Errorf("kt: unknown entry version %d", b[0])
	}
	var (
		e   Entry
		err error
	)
	switch EntryType(b[1]) {
	case TypeDeviceBinding:
		e, err = parseDeviceBinding(b)
	case TypeLookupBinding:
		e, err = parseLookupBinding(b)
	default:
		return nil, fmt.Errorf("kt: unknown entry type %d", b[1])
	}
	if err != nil {
		return nil, fmt.Errorf("kt: %w", err)
	}
	return e, nil
}

func parseDeviceBinding(b []byte) (DeviceBinding, error) {
	var d DeviceBinding
	if len(b) != DeviceBindingSize {
		return d, fmt.Errorf("device binding is %d bytes, want %d", len(b), DeviceBindingSize)
	}
	copy(d.Account[:], b[2:18])
	d.Device = binary.BigEndian.Uint32(b[18:22])
	copy(d.IdentityKey[:], b[22:55])
	d.State = State(b[55])
	d.Sequence = binary.BigEndian.Uint64(b[56:64])
	t, err := decodeTime(b[64:72])
	if err != nil {
		return d, fmt.Errorf("device binding: %w", err)
	}
	d.Time = t
	// Reuse the encoder's checks so that parse and encode accept the same set.
	if _, err := d.appendEntry(nil); err != nil {
		return DeviceBinding{}, err
	}
	return d, nil
}

func parseLookupBinding(b []byte) (LookupBinding, error) {
	var l LookupBinding
	if len(b) != LookupBindingSize {
		return l, fmt.Errorf("lookup binding is %d bytes, want %d", len(b), LookupBindingSize)
	}
	l.Kind = LookupKind(b[2])
	copy(l.Index[:], b[3:67])
	copy(l.Account[:], b[67:83])
	l.State = State(b[83])
	l.Sequence = binary.BigEndian.Uint64(b[84:92])
	t, err := decodeTime(b[92:100])
	if err != nil {
		return l, fmt.Errorf("lookup binding: %w", err)
	}
	l.Time = t
	if _, err := l.appendEntry(nil); err != nil {
		return LookupBinding{}, err
	}
	return l, nil
}

// LeafHash returns the RFC 6962 leaf hash of an encoded entry,
// SHA-256(0x00 || entry), the hash the log's Merkle tree is built from.
func LeafHash(entry []byte) tlog.Hash {
	return tlog.RecordHash(entry)
}
