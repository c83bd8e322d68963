package kt

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxNoteSize bounds a signed checkpoint before it is parsed: a checkpoint
// is about 100 bytes of text and each signature line about 100 more, so 16
// KiB leaves room for many cosigners and keeps a hostile peer's input small.
const maxNoteSize = 16 << 10

// ErrInvalidProof is returned (wrapped) when an inclusion or consistency
// proof does not verify against the checkpoints it is meant to link.
var ErrInvalidProof = errors.New("kt: invalid proof")

// A Checkpoint is a log's commitment to its first Size entries: the root
// Hash of the RFC 6962 Merkle tree over them, named by the log's Origin.
type Checkpoint struct {
	// Origin names the log; it is also the name of its signing key.
	Origin string
	Size   int64
	Hash   tlog.Hash
	// Note is the signed note the checkpoint was read from, kept as
	// evidence; it is nil for a checkpoint that was not read from a note.
	Note []byte
}

// Tree returns the size and hash as a tlog.Tree.
func (c Checkpoint) Tree() tlog.Tree {
	return tlog.Tree{N: c.Size, Hash: c.Hash}
}

// Same reports whether c and other commit to the same tree of the same log,
// regardless of who signed them.
func (c Checkpoint) Same(other Checkpoint) bool {
	return c.Origin == other.Origin && c.Size == other.Size && c.Hash == other.Hash
}

// String returns the checkpoint body; it holds nothing secret.
func (c Checkpoint) String() string {
	return string(FormatCheckpoint(c.Origin, c.Tree()))
}

// FormatCheckpoint returns the checkpoint body of the C2SP tlog-checkpoint
// format: the origin line, the tree size in decimal and the root hash in
// standard base64, each ending in a newline. It is the text a log signs.
func FormatCheckpoint(origin string, tree tlog.Tree) []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", origin, tree.N, base64.StdEncoding.EncodeToString(tree.Hash[:]))
}

// ParseCheckpoint parses a checkpoint body (the text of the note, without
// signatures). Extension lines after the hash are allowed by the C2SP format
// and ignored; nothing this package checks depends on them.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	var c Checkpoint
	if len(text) == 0 || text[len(text)-1] != '\n' || !utf8.Valid(text) {
		return c, errors.New("kt: malformed checkpoint")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return c, errors.New("kt: checkpoint has fewer than three lines")
	}
	origin, size, hash := lines[0], lines[1], lines[2]
	if origin == "" || strings.ContainsFunc(origin, isSpaceOrControl) {
		return c, errors.New("kt: checkpoint origin is malformed")
	}
	// Decimal digits only, no sign or leading zero, so each size has one
	// spelling and two texts for one tree cannot differ.
	if size == "" || (len(size) > 1 && size[0] == '0') || strings.IndexFunc(size, notDigit) >= 0 {
		return c, errors.New("kt: checkpoint size is malformed")
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil {
		return c, fmt.Errorf("kt: checkpoint size: %w", err)
	}
	h, err := base64.StdEncoding.Strict().DecodeString(hash)
	if err != nil || len(h) != tlog.HashSize {
		return c, errors.New("kt: checkpoint hash is malformed")
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return c, errors.New("kt: checkpoint has an empty extension line")
		}
	}
	c.Origin = origin
	c.Size = n
	copy(c.Hash[:], h)
	return c, nil
}

func notDigit(r rune) bool { return r < '0' || r > '9' }

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f || r == '\u0085' || r == '\u00a0' || r == '\u2028' || r == '\u2029'
}

// SignCheckpoint signs a checkpoint for tree with signer; the origin is the
// signer's name.
func SignCheckpoint(signer note.Signer, tree tlog.Tree) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: string(FormatCheckpoint(signer.Name(), tree))}, signer)
	if err != nil {
		return nil, fmt.Errorf("kt: signing checkpoint: %w", err)
	}
	return msg, nil
}

// VerifyCheckpoint checks that signed is a note signed by verifier whose text
// is a checkpoint with the verifier's name as origin, and returns the
// checkpoint. Signatures by other keys are ignored; one by verifier is
// required. Requiring origin == key name stops a checkpoint of one log from
// being presented as a checkpoint of another log signed by the same key.
func VerifyCheckpoint(verifier note.Verifier, signed []byte) (Checkpoint, error) {
	if len(signed) > maxNoteSize {
		return Checkpoint{}, fmt.Errorf("kt: checkpoint note is %d bytes, limit %d", len(signed), maxNoteSize)
	}
	n, err := note.Open(signed, note.VerifierList(verifier))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("kt: opening checkpoint: %w", err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != verifier.Name() {
		return Checkpoint{}, fmt.Errorf("kt: checkpoint origin %q is not the key name %q", c.Origin, verifier.Name())
	}
	c.Note = bytes.Clone(signed)
	return c, nil
}

// VerifyInclusion checks that leaf, an encoded entry, is the entry at index
// in the tree cp commits to.
func VerifyInclusion(cp Checkpoint, index int64, leaf []byte, proof tlog.RecordProof) error {
	if index < 0 || index >= cp.Size {
		return fmt.Errorf("kt: entry %d outside a tree of size %d", index, cp.Size)
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Hash, index, tlog.RecordHash(leaf)); err != nil {
		return fmt.Errorf("%w: inclusion of entry %d in tree of size %d: %w", ErrInvalidProof, index, cp.Size, err)
	}
	return nil
}

// VerifyConsistency checks that the tree older commits to is a prefix of the
// tree newer commits to. Both must be of the same log and older must not be
// larger than newer. Equal sizes need equal hashes and an empty proof; an
// empty older tree is a prefix of every tree.
func VerifyConsistency(older, newer Checkpoint, proof tlog.TreeProof) error {
	if older.Origin != newer.Origin {
		return fmt.Errorf("kt: checkpoints of different logs %q and %q", older.Origin, newer.Origin)
	}
	if older.Size < 0 || older.Size > newer.Size {
		return fmt.Errorf("kt: checkpoint of size %d is not older than one of size %d", older.Size, newer.Size)
	}
	if older.Size == 0 {
		if len(proof) != 0 {
			return fmt.Errorf("%w: non-empty proof from the empty tree", ErrInvalidProof)
		}
		return nil
	}
	if err := tlog.CheckTree(proof, newer.Size, newer.Hash, older.Size, older.Hash); err != nil {
		return fmt.Errorf("%w: consistency of trees of size %d and %d: %w", ErrInvalidProof, older.Size, newer.Size, err)
	}
	return nil
}
