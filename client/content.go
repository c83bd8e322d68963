package client

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
)

// Content is what travels inside the Signal ciphertext: a version byte (see
// [encodeContent]), then a small protobuf message, then padding (see [pad]). Fields are
// never renumbered or reused; a receiver skips fields it does not know, so later
// releases add groups and channels as new fields.
//
//	message Content {
//	  string text = 1;               // the message text, UTF-8
//	  uint64 sent_ms = 2;            // sender's clock, ms since the epoch
//	  string sender_number = 3;      // optional: the sender's phone number, checked by the
//	                                 // receiver against the directory before it is shown
//	  bytes  sync_destination = 4;   // 16-byte account id: set on the copy sent to the
//	                                 // sender's own other devices, naming the recipient
//	  bytes  kt_checkpoint = 5;      // the newest key transparency checkpoint the sender
//	                                 // verified (a signed note), for the receiver to compare
//	  bytes  group_id = 6;           // 32 bytes: the group a message, change or sender
//	                                 // key belongs to (docs/groups.md)
//	  bytes  group_changes = 7;      // group-control changes, in client/group's history
//	                                 // encoding (one change, or a whole history)
//	  bytes  sender_key_distribution = 8; // a libsignal SenderKeyDistributionMessage for
//	                                 // the group named by group_id
//	  bytes  channel_id = 9;         // 16 bytes: a private channel (docs/channels.md)
//	  bytes  channel_signer = 10;    // 32 bytes: the Ed25519 key of a channel signer
//	  bytes  channel_distribution = 11; // the SenderKeyDistributionMessage of that
//	                                 // signer's chain in that private channel
//	  bytes  channel_admission_sig = 12; // 64 bytes: the channel owner's Ed25519
//	                                 // signature admitting the recipient to that chain
//	                                 // (channels_admit.go, admissionMessage)
//	}
//
// Fields 6 to 8 travel over 1:1 sessions (changes, distributions) or inside the sender
// key plaintext of a group message (group_id with text); 9 to 12 travel over 1:1 sessions
// from a private channel's owner to a subscriber it admits.
type Content struct {
	Text            string
	SentMS          uint64
	SenderNumber    string
	SyncDestination uuid.UUID
	KTCheckpoint    string // see kt.go: checkpoints gossiped between peers (a signed note)

	GroupID               []byte // 32 bytes when set
	GroupChanges          []byte // client/group history encoding
	SenderKeyDistribution []byte // serialized SenderKeyDistributionMessage

	ChannelID           []byte // 16 bytes when set
	ChannelSigner       []byte // 32 bytes when set
	ChannelDistribution []byte // serialized SenderKeyDistributionMessage
	ChannelAdmissionSig []byte // 64 bytes when set: the owner's signature of the admission
}

const (
	fieldText            = 1
	fieldSentMS          = 2
	fieldSenderNumber    = 3
	fieldSyncDestination = 4
	fieldKTCheckpoint    = 5

	fieldGroupID               = 6
	fieldGroupChanges          = 7
	fieldSenderKeyDistribution = 8
	fieldChannelID             = 9
	fieldChannelSigner         = 10
	fieldChannelDistribution   = 11
	fieldChannelAdmissionSig   = 12

	fieldLast = fieldChannelAdmissionSig
)

// fixedLength is the length a bytes field must have, for those that have one (ids and
// keys): a receiver refuses any other rather than truncating or padding it.
var fixedLength = map[protowire.Number]int{
	fieldSyncDestination:     16,
	fieldGroupID:             32,
	fieldChannelID:           16,
	fieldChannelSigner:       32,
	fieldChannelAdmissionSig: 64, // Ed25519
}

// marshal encodes c.
func (c *Content) marshal() []byte {
	var b []byte
	if c.Text != "" {
		b = protowire.AppendTag(b, fieldText, protowire.BytesType)
		b = protowire.AppendString(b, c.Text)
	}
	if c.SentMS != 0 {
		b = protowire.AppendTag(b, fieldSentMS, protowire.VarintType)
		b = protowire.AppendVarint(b, c.SentMS)
	}
	if c.SenderNumber != "" {
		b = protowire.AppendTag(b, fieldSenderNumber, protowire.BytesType)
		b = protowire.AppendString(b, c.SenderNumber)
	}
	if c.SyncDestination != uuid.Nil {
		b = protowire.AppendTag(b, fieldSyncDestination, protowire.BytesType)
		b = protowire.AppendBytes(b, c.SyncDestination[:])
	}
	if c.KTCheckpoint != "" {
		b = protowire.AppendTag(b, fieldKTCheckpoint, protowire.BytesType)
		b = protowire.AppendString(b, c.KTCheckpoint)
	}
	for _, f := range []struct {
		num protowire.Number
		v   []byte
	}{
		{fieldGroupID, c.GroupID},
		{fieldGroupChanges, c.GroupChanges},
		{fieldSenderKeyDistribution, c.SenderKeyDistribution},
		{fieldChannelID, c.ChannelID},
		{fieldChannelSigner, c.ChannelSigner},
		{fieldChannelDistribution, c.ChannelDistribution},
		{fieldChannelAdmissionSig, c.ChannelAdmissionSig},
	} {
		if len(f.v) > 0 {
			b = protowire.AppendTag(b, f.num, protowire.BytesType)
			b = protowire.AppendBytes(b, f.v)
		}
	}
	return b
}

var errBadContent = errors.New("content: invalid encoding")

// unmarshalContent decodes b strictly for known fields (right wire type, valid UTF-8,
// no repeats) and skips unknown ones.
func unmarshalContent(b []byte) (*Content, error) {
	c := &Content{}
	seen := map[protowire.Number]bool{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, errBadContent
		}
		b = b[n:]
		known := num >= fieldText && num <= fieldLast
		if known && seen[num] {
			return nil, fmt.Errorf("%w: field %d repeated", errBadContent, num)
		}
		seen[num] = true
		switch {
		case num == fieldSentMS && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, errBadContent
			}
			c.SentMS, b = v, b[n:]
		case known && num != fieldSentMS && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, errBadContent
			}
			b = b[n:]
			if want, ok := fixedLength[num]; ok && len(v) != want {
				return nil, fmt.Errorf("%w: field %d is %d bytes, not %d", errBadContent, num, len(v), want)
			}
			switch num {
			case fieldText, fieldSenderNumber:
				if !utf8.Valid(v) {
					return nil, fmt.Errorf("%w: field %d is not UTF-8", errBadContent, num)
				}
				if num == fieldText {
					c.Text = string(v)
				} else {
					c.SenderNumber = string(v)
				}
			case fieldSyncDestination:
				c.SyncDestination = uuid.UUID(v)
			case fieldKTCheckpoint:
				c.KTCheckpoint = string(v)
			case fieldGroupID:
				c.GroupID = bytes.Clone(v)
			case fieldGroupChanges:
				c.GroupChanges = bytes.Clone(v)
			case fieldSenderKeyDistribution:
				c.SenderKeyDistribution = bytes.Clone(v)
			case fieldChannelID:
				c.ChannelID = bytes.Clone(v)
			case fieldChannelSigner:
				c.ChannelSigner = bytes.Clone(v)
			case fieldChannelDistribution:
				c.ChannelDistribution = bytes.Clone(v)
			case fieldChannelAdmissionSig:
				c.ChannelAdmissionSig = bytes.Clone(v)
			}
		case known:
			return nil, fmt.Errorf("%w: field %d has wire type %d", errBadContent, num, typ)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, errBadContent
			}
			b = b[n:]
		}
	}
	return c, nil
}

// contentVersion is the first byte of every plaintext inside the Signal ciphertext, before
// the protobuf. Fields are added to the protobuf without a new version; a new version
// is for a change an old receiver must not misread, and such a receiver then refuses
// the message instead of guessing.
const contentVersion = 0x01

// encodeContent is what goes into the Signal ciphertext: the version, the protobuf, and
// the padding.
func encodeContent(c *Content) []byte {
	return pad(append([]byte{contentVersion}, c.marshal()...))
}

// decodeContent reverses encodeContent.
func decodeContent(plaintext []byte) (*Content, error) {
	raw, err := unpad(plaintext)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 || raw[0] != contentVersion {
		return nil, fmt.Errorf("%w: unknown content version", errBadContent)
	}
	return unmarshalContent(raw[1:])
}

// padBlock is Signal's padding unit: every plaintext is padded to a multiple of 160 bytes
// so that the ciphertext's length says little about the message's.
const padBlock = 160

// pad appends 0x80 and then zeros up to the next multiple of padBlock (the padding the
// Signal apps put inside the ciphertext; ISO/IEC 7816-4 style, so it is unambiguous).
func pad(b []byte) []byte {
	n := (len(b)/padBlock + 1) * padBlock
	out := make([]byte, n)
	copy(out, b)
	out[len(b)] = 0x80
	return out
}

// unpad removes what pad added.
func unpad(b []byte) ([]byte, error) {
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case 0:
			continue
		case 0x80:
			return b[:i], nil
		default:
			return nil, errBadContent
		}
	}
	return nil, errBadContent
}
