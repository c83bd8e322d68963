// Package fingerprint computes Signal safety numbers, equal to libsignal 0.90.0's
// (rust/protocol/src/fingerprint.rs, schema proto/fingerprint.proto) for the same
// inputs: the 60-digit number two people compare aloud and the scannable form a QR
// code carries.
//
// What it protects: two people who compare their safety numbers over a channel they
// trust (in person, a voice they know) learn whether each holds the other's real
// identity key, which detects a server or network that substituted a key. What it does
// not: it proves nothing if nobody compares, it says nothing about devices or prekeys
// (only identity keys), and the 30-digit halves are a deliberately slow hash (iterated
// SHA-512) of public data, not secrets.
//
// Each side's half is SHA-512 over 0x0000 || key || identifier || key, then iterated
// (iterations-1 more times) over the previous digest || key, with key the 33-byte
// serialized identity key. The displayable number takes the first 30 bytes of each
// digest as six 5-byte big-endian integers mod 100000, printed as five digits each,
// the lower half first so both people see the same number. The scannable form is the
// protobuf CombinedFingerprints{version, local: first 32 bytes, remote: first 32 bytes}.
package fingerprint

import (
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bastionchat/bastion/protocol/curve"
)

const (
	// Version is the scannable version Signal uses today: identifiers are the 16 bytes
	// of the account's ACI (version 1 used phone numbers).
	Version = 2
	// Iterations is the iteration count Signal uses: it makes finding a key pair whose
	// safety number collides with a target's cost 5200 hashes per try.
	Iterations = 5200

	// maxIterations bounds the work one call can cost, as libsignal does.
	maxIterations = 1_000_000
	// scannableSize is how many digest bytes each side puts in the scannable form.
	scannableSize = 32
)

var (
	// ErrVersionMismatch is returned by [Fingerprint.Compare] when the scanned
	// fingerprint has another version: the other side runs different software, and the
	// numbers say nothing either way.
	ErrVersionMismatch = errors.New("fingerprint: version mismatch")
	// ErrInvalidEncoding is returned by [Fingerprint.Compare] for bytes that are not a
	// well-formed scannable fingerprint.
	ErrInvalidEncoding = errors.New("fingerprint: invalid scannable encoding")
)

// Fingerprint is the safety number of two identities, as seen from the local side.
type Fingerprint struct {
	version       uint32
	local, remote [sha512.Size]byte
}

// New computes the safety number between the local identity (localID, localKey) and
// the remote one. Signal uses [Version] and [Iterations], with each account's ACI as
// its 16-byte identifier.
func New(version, iterations int, localID []byte, localKey *curve.PublicKey, remoteID []byte, remoteKey *curve.PublicKey) (*Fingerprint, error) {
	if version < 0 || version > math.MaxUint32 {
		return nil, fmt.Errorf("fingerprint: version %d out of range", version)
	}
	if iterations <= 1 || iterations > maxIterations {
		return nil, fmt.Errorf("fingerprint: %d iterations, want 2 to %d", iterations, maxIterations)
	}
	if localKey == nil || remoteKey == nil {
		return nil, errors.New("fingerprint: nil identity key")
	}
	return &Fingerprint{
		version: uint32(version),
		local:   digest(iterations, localID, localKey),
		remote:  digest(iterations, remoteID, remoteKey),
	}, nil
}

// digest is one side's iterated SHA-512.
func digest(iterations int, id []byte, key *curve.PublicKey) [sha512.Size]byte {
	k := key.Bytes()
	h := sha512.New()
	h.Write([]byte{0, 0}) // the fingerprint format version, 0x0000
	h.Write(k)
	h.Write(id)
	h.Write(k)
	// Every later round hashes the previous digest || key: one fixed buffer, no
	// allocation per round.
	var buf [sha512.Size + curve.PublicKeySize]byte
	h.Sum(buf[:0])
	copy(buf[sha512.Size:], k)
	for i := 1; i < iterations; i++ {
		d := sha512.Sum512(buf[:])
		copy(buf[:sha512.Size], d[:])
	}
	return [sha512.Size]byte(buf[:sha512.Size])
}

// half renders a digest's first 30 bytes as 30 digits.
func half(d *[sha512.Size]byte) string {
	b := make([]byte, 0, 30)
	for i := 0; i < 30; i += 5 {
		var v uint64
		for _, c := range d[i : i+5] {
			v = v<<8 | uint64(c)
		}
		s := strconv.FormatUint(v%100_000, 10)
		for range 5 - len(s) {
			b = append(b, '0')
		}
		b = append(b, s...)
	}
	return string(b)
}

// Displayable returns the 60-digit safety number. Both sides compute the same one: the
// smaller 30-digit half comes first.
func (f *Fingerprint) Displayable() string {
	l, r := half(&f.local), half(&f.remote)
	if l < r {
		return l + r
	}
	return r + l
}

// Scannable returns the form a QR code carries: libsignal's CombinedFingerprints
// protobuf, from the local side's point of view.
func (f *Fingerprint) Scannable() []byte {
	return encode(f.version, f.local[:scannableSize], f.remote[:scannableSize])
}

func encode(version uint32, local, remote []byte) []byte {
	b := make([]byte, 0, 2+6+2*(2+2+scannableSize))
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(version))
	for i, content := range [][]byte{local, remote} {
		inner := protowire.AppendTag(nil, 1, protowire.BytesType)
		inner = protowire.AppendBytes(inner, content)
		b = protowire.AppendTag(b, protowire.Number(2+i), protowire.BytesType)
		b = protowire.AppendBytes(b, inner)
	}
	return b
}

// Compare reports whether scanned, the scannable fingerprint the other side shows,
// matches ours: its local half must be our remote one and the reverse. The comparison
// is constant-time. A different version is [ErrVersionMismatch], bytes that do not
// parse are [ErrInvalidEncoding]; neither means the keys differ.
func (f *Fingerprint) Compare(scanned []byte) (bool, error) {
	s, err := parseScannable(scanned)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	if s.version != f.version {
		return false, fmt.Errorf("%w: theirs %d, ours %d", ErrVersionMismatch, s.version, f.version)
	}
	same := subtle.ConstantTimeCompare(s.local, f.remote[:scannableSize]) &
		subtle.ConstantTimeCompare(s.remote, f.local[:scannableSize])
	return same == 1, nil
}

type scannable struct {
	version       uint32
	local, remote []byte
}

// parseScannable reads CombinedFingerprints in the one form libsignal writes it:
// version (1), local (2) and remote (3), each present once and in order, each
// LogicalFingerprint holding exactly its 32-byte content (1).
func parseScannable(b []byte) (*scannable, error) {
	s := new(scannable)
	for i := protowire.Number(1); i <= 3; i++ {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("field %d: %w", i, protowire.ParseError(n))
		}
		if num != i || n != protowire.SizeTag(num) {
			return nil, fmt.Errorf("field %d expected, found field %d", i, num)
		}
		b = b[n:]
		if i == 1 {
			if typ != protowire.VarintType {
				return nil, errors.New("version is not a varint")
			}
			v, m := protowire.ConsumeVarint(b)
			if m < 0 || m != protowire.SizeVarint(v) || v > math.MaxUint32 {
				return nil, errors.New("version is not a minimal 32-bit varint")
			}
			s.version = uint32(v)
			b = b[m:]
			continue
		}
		content, m, err := consumeLogical(typ, b)
		if err != nil {
			return nil, fmt.Errorf("field %d: %w", i, err)
		}
		b = b[m:]
		if i == 2 {
			s.local = content
		} else {
			s.remote = content
		}
	}
	if len(b) != 0 {
		return nil, errors.New("trailing bytes")
	}
	return s, nil
}

// consumeLogical reads one length-delimited LogicalFingerprint{content = 1}.
func consumeLogical(typ protowire.Type, b []byte) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, errors.New("not length-delimited")
	}
	inner, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, protowire.ParseError(n)
	}
	if n != protowire.SizeBytes(len(inner)) {
		return nil, 0, errors.New("non-minimal length")
	}
	num, typ, m := protowire.ConsumeTag(inner)
	if m < 0 || num != 1 || typ != protowire.BytesType || m != protowire.SizeTag(num) {
		return nil, 0, errors.New("content field expected")
	}
	content, k := protowire.ConsumeBytes(inner[m:])
	if k < 0 || k != protowire.SizeBytes(len(content)) || m+k != len(inner) {
		return nil, 0, errors.New("malformed content")
	}
	if len(content) != scannableSize {
		return nil, 0, fmt.Errorf("content is %d bytes, want %d", len(content), scannableSize)
	}
	return content, n, nil
}
