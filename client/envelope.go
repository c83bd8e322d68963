package client

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/curve"
)

// This file is the one place where envelope bodies are made and read: the seam between
// the Signal ciphertext and what the server stores.
//
// TEMPORARY: until protocol/sealed lands, the body is a plain container that names the
// sender in the clear:
//
//	0x01 || protobuf { bytes sender = 1 (16-byte account id); uint32 device = 2;
//	                   uint32 type = 3; bytes ciphertext = 4 }
//
// That lets the server read who sent each envelope, which the design forbids; it is to
// be replaced by sealed sender v1 (libsignal's UnidentifiedSenderMessage, version 0x11)
// behind these same two functions.

const containerVersion = 0x01

// opened is a read envelope body.
type opened struct {
	sender     protocol.Address
	typ        protocol.MessageType
	ciphertext []byte
	// senderIdentity is the identity key the body vouches for (the sealed-sender
	// certificate's), or nil when the body carries none; when set it must equal the
	// identity of the session that decrypts the ciphertext.
	senderIdentity *curve.PublicKey
}

var errBadBody = errors.New("envelope: invalid body")

// sealBody wraps one device's ciphertext into an envelope body.
func (c *Client) sealBody(_ context.Context, _ *curve.PublicKey, msg protocol.CiphertextMessage) ([]byte, error) {
	id := c.acc.AccountID
	b := []byte{containerVersion}
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, id[:])
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(c.acc.DeviceID))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(msg.Type()))
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, msg.Bytes())
	return b, nil
}

// openBody reads an envelope body. Every failure is errBadBody.
func (c *Client) openBody(_ context.Context, body []byte) (*opened, error) {
	if len(body) < 1 || body[0] != containerVersion {
		return nil, errBadBody
	}
	b := body[1:]
	var o opened
	var sender []byte
	var dev, typ uint64
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, errBadBody
		}
		b = b[n:]
		switch {
		case (num == 1 || num == 4) && wt == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, errBadBody
			}
			if num == 1 {
				sender = v
			} else {
				o.ciphertext = v
			}
			b = b[n:]
		case (num == 2 || num == 3) && wt == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, errBadBody
			}
			if num == 2 {
				dev = v
			} else {
				typ = v
			}
			b = b[n:]
		default:
			return nil, errBadBody
		}
	}
	if len(sender) != 16 || dev == 0 || dev > 1<<31 || len(o.ciphertext) == 0 {
		return nil, errBadBody
	}
	o.sender = protocol.Address{Name: uuid.UUID(sender).String(), DeviceID: uint32(dev)}
	o.typ = protocol.MessageType(typ)
	if o.typ != protocol.TypeSignal && o.typ != protocol.TypePreKey {
		return nil, errBadBody
	}
	return &o, nil
}

// fetchTrustRoot is where sealed sender will pin the server's trust root at
// registration; the container needs none.
func (c *Client) fetchTrustRoot(context.Context) error { return nil }
