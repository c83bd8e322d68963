// Bastion's libsignal interop peer.
//
// A long-running process that drives Signal's own libsignal (the npm package
// @signalapp/libsignal-client, pinned in package.json) on behalf of Bastion's Go
// tests, so they can prove that our Go Signal Protocol implementation is
// byte-compatible with the reference in both directions. It is test tooling:
// every key it makes lives only in this process's memory, and it will hand
// private keys to its caller when asked.
//
// Protocol: JSON lines over stdin/stdout. One request per line, one reply per
// line, replies carry the request's id:
//
//   -> {"id":N,"op":"<op>", ...args}
//   <- {"id":N,"ok":true, ...results}
//   <- {"id":N,"ok":false,"error":"<message>","code":"<libsignal ErrorCode name or ''>"}
//
// Requests are executed one at a time, in arrival order. All byte strings are
// standard (padded) base64; a malformed one is an error, never silently
// truncated. Public keys are libsignal's serialized form (0x05 || 32 bytes,
// Kyber: 0x08 || 1568 bytes). An address is {"name": "<uuid>", "device_id": N}.
// Nothing but replies is ever written to stdout; diagnostics go to stderr.
//
// Parties (each with its own in-memory identity, session, prekey, signed
// prekey, Kyber prekey and sender-key stores):
//   hello {}                                  -> {libsignal_version, node_version}
//   new_party {party, registration_id?, identity_private?}
//                                             -> {identity_key, registration_id}
//   identity {party}                          -> {identity_key, identity_private, registration_id}
//   generate_bundle {party, device_id, prekey_id, signed_prekey_id, kyber_prekey_id,
//                    no_prekey?}              -> Bundle (fields below; prekey_* omitted with no_prekey)
//   process_bundle {party, address, bundle}   -> {}
//   encrypt {party, address, plaintext}       -> {type, ciphertext}   type 2 = SignalMessage, 3 = PreKeySignalMessage
//   decrypt {party, address, type, ciphertext}-> {plaintext}
//   session_info {party, address}             -> {exists, has_current_state, local_registration_id?,
//                                                 remote_registration_id?, record}   (ids only with a current state)
//   session_archive {party, address}          -> {}
//   save_identity {party, address, identity_key} -> {replaced}
//   get_identity {party, address}             -> {identity_key}   (absent if unknown)
//   prekey_state {party}                      -> {prekey_ids, signed_prekey_ids, kyber_prekey_ids, kyber_used}
//   sk_create {party, sender, distribution_id}-> {skdm}
//   sk_process {party, sender, skdm}          -> {}
//   group_encrypt {party, sender, distribution_id, plaintext} -> {ciphertext}
//   group_decrypt {party, sender, ciphertext} -> {plaintext}
//   group_sealed_encrypt {party, sender, distribution_id, plaintext, sender_certificate, recipients,
//                         group_id?, content_hint?}
//                                             -> {message, sealed}   one SenderKeyMessage, sealed (v1,
//                                                 type SenderKey) once per recipient address, in order
//   group_sealed_decrypt {party, ciphertext, trust_root, timestamp}
//                                             -> {plaintext, sender_uuid, sender_device_id, content_hint, group_id?}
//   sealed_encrypt {party, address, sender_certificate, plaintext} -> {ciphertext}
//   sealed_decrypt {party, ciphertext, trust_root, timestamp, local_uuid, local_device_id, local_e164?}
//                                             -> {plaintext, sender_uuid, sender_e164, sender_device_id}
//   sealed_decrypt_to_usmc {party, ciphertext}-> {msg_type, contents, sender_certificate, content_hint, group_id}
//
// Stateless:
//   keypair_generate {}                       -> {private, public}
//   public_key {private_key}                  -> {public_key}
//   xeddsa_sign {private_key, message}        -> {signature}
//   xeddsa_verify {public_key, message, signature} -> {valid}
//   agree {private_key, public_key}           -> {shared_secret}
//   kyber_keypair {}                          -> {public, secret}
//   hkdf {length, ikm, info, salt?}           -> {okm}
//   fingerprint {version, iterations, local_id, local_key, remote_id, remote_key}
//                                             -> {displayable, scannable}
//   fingerprint_compare {a, b}                -> {equal}   (scannable encodings; throws on a version mismatch)
//   sender_certificate {trust_root_private, server_key_private, server_key_id, sender_uuid,
//                       sender_e164?, sender_device_id, sender_identity_key, expiration}
//                                             -> {server_certificate, sender_certificate}
//   sender_certificate_validate {sender_certificate, trust_root, time} -> {valid}
//   parse_signal_message {message}            -> {version, counter, body, pq_ratchet}
//   parse_prekey_message {message}            -> {version, registration_id, prekey_id, signed_prekey_id}
//   build_signal_message {version, mac_key, sender_ratchet_key, counter, previous_counter,
//                         ciphertext, sender_identity_key, receiver_identity_key, pq_ratchet?}
//                                             -> {message}
//   verify_mac {message, sender_identity_key, receiver_identity_key, mac_key} -> {valid}
//   parse_skdm {skdm}                         -> {distribution_id, chain_id, iteration, chain_key}
//   build_skdm {version, distribution_id, chain_id, iteration, chain_key, signing_key} -> {skdm}
//   build_sender_key_message {version, distribution_id, chain_id, iteration, ciphertext, signing_private}
//                                             -> {message}   (XEdDSA signature is randomized)
//   parse_sender_key_message {message, signing_key?}
//                                             -> {distribution_id, chain_id, iteration, body, signature_valid?}
//   bench {kind: one_chain|ratchet_step|setup|group, n} -> {ns_per_op, n}
//   quit {}                                   -> {} then exit
//
// Bundle fields: registration_id, device_id, prekey_id, prekey_public,
// signed_prekey_id, signed_prekey_public, signed_prekey_signature,
// kyber_prekey_id, kyber_prekey_public, kyber_prekey_signature, identity_key.
// A bundle without prekey_public has no one-time EC prekey.

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import * as SignalClient from '@signalapp/libsignal-client';

const {
  CiphertextMessageType,
  Fingerprint,
  IdentityChange,
  KEMKeyPair,
  KEMPublicKey,
  KyberPreKeyRecord,
  LibSignalErrorBase,
  PreKeyBundle,
  PreKeyRecord,
  PreKeySignalMessage,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderCertificate,
  SenderKeyDistributionMessage,
  SenderKeyMessage,
  SenderKeyRecord,
  ServerCertificate,
  SessionRecord,
  SignalMessage,
  SignedPreKeyRecord,
  UnidentifiedSenderMessageContent,
} = SignalClient;

const libsignalVersion = JSON.parse(
  readFileSync(new URL('./node_modules/@signalapp/libsignal-client/package.json', import.meta.url)),
).version;

// ---------------------------------------------------------------------------
// Encoding helpers.

const b64re = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function bytes(args, field, { optional = false } = {}) {
  const v = args[field];
  if (v === undefined || v === null) {
    if (optional) return null;
    throw new Error(`missing field ${field}`);
  }
  if (typeof v !== 'string' || !b64re.test(v)) {
    throw new Error(`field ${field} is not standard base64`);
  }
  // A fresh copy: Buffer.from may return a view into a shared pool.
  return new Uint8Array(Buffer.from(v, 'base64'));
}

function b64(u8) {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('base64');
}

function uint(args, field, { optional = false, max = 0xffffffff } = {}) {
  const v = args[field];
  if (v === undefined || v === null) {
    if (optional) return null;
    throw new Error(`missing field ${field}`);
  }
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new Error(`field ${field} is not an integer in [0, ${max}]`);
  }
  return v;
}

function str(args, field, { optional = false } = {}) {
  const v = args[field];
  if (v === undefined || v === null) {
    if (optional) return null;
    throw new Error(`missing field ${field}`);
  }
  if (typeof v !== 'string') throw new Error(`field ${field} is not a string`);
  return v;
}

function address(args, field = 'address') {
  const a = args[field];
  if (a === undefined || a === null || typeof a !== 'object') {
    throw new Error(`missing field ${field}`);
  }
  return ProtocolAddress.new(str(a, 'name'), uint(a, 'device_id'));
}

function addrKey(addr) {
  return `${addr.name()}.${addr.deviceId()}`;
}

// ---------------------------------------------------------------------------
// In-memory stores. Records are kept serialized, as a real client's database
// would keep them, so every load goes through libsignal's own parser.

class MemoryIdentityStore extends SignalClient.IdentityKeyStore {
  constructor(privateKey, registrationId) {
    super();
    this.privateKey = privateKey;
    this.registrationId = registrationId;
    this.known = new Map(); // addrKey -> serialized PublicKey
  }
  async getIdentityKey() {
    return this.privateKey;
  }
  async getLocalRegistrationId() {
    return this.registrationId;
  }
  async saveIdentity(name, key) {
    const k = addrKey(name);
    const prev = this.known.get(k);
    const ser = key.serialize();
    this.known.set(k, ser);
    if (prev !== undefined && !Buffer.from(prev).equals(Buffer.from(ser))) {
      return IdentityChange.ReplacedExisting;
    }
    return IdentityChange.NewOrUnchanged;
  }
  // Trust on first use: a key is trusted if none is recorded yet or it is the
  // recorded one, in both directions.
  async isTrustedIdentity(name, key, _direction) {
    const prev = this.known.get(addrKey(name));
    return prev === undefined || Buffer.from(prev).equals(Buffer.from(key.serialize()));
  }
  async getIdentity(name) {
    const prev = this.known.get(addrKey(name));
    return prev === undefined ? null : PublicKey.deserialize(prev);
  }
}

class MemorySessionStore extends SignalClient.SessionStore {
  constructor() {
    super();
    this.sessions = new Map(); // addrKey -> serialized SessionRecord
  }
  async saveSession(name, record) {
    this.sessions.set(addrKey(name), record.serialize());
  }
  async getSession(name) {
    const s = this.sessions.get(addrKey(name));
    return s === undefined ? null : SessionRecord.deserialize(s);
  }
  async getExistingSessions(addresses) {
    return addresses.map((a) => {
      const s = this.sessions.get(addrKey(a));
      if (s === undefined) throw new Error(`no session for ${addrKey(a)}`);
      return SessionRecord.deserialize(s);
    });
  }
}

class MemoryPreKeyStore extends SignalClient.PreKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async savePreKey(id, record) {
    this.records.set(id, record.serialize());
  }
  async getPreKey(id) {
    const r = this.records.get(id);
    if (r === undefined) throw new Error(`no prekey ${id}`);
    return PreKeyRecord.deserialize(r);
  }
  async removePreKey(id) {
    this.records.delete(id);
  }
}

class MemorySignedPreKeyStore extends SignalClient.SignedPreKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async saveSignedPreKey(id, record) {
    this.records.set(id, record.serialize());
  }
  async getSignedPreKey(id) {
    const r = this.records.get(id);
    if (r === undefined) throw new Error(`no signed prekey ${id}`);
    return SignedPreKeyRecord.deserialize(r);
  }
}

class MemoryKyberPreKeyStore extends SignalClient.KyberPreKeyStore {
  constructor() {
    super();
    this.records = new Map();
    this.used = []; // {kyber_prekey_id, signed_prekey_id, base_key}
  }
  async saveKyberPreKey(id, record) {
    this.records.set(id, record.serialize());
  }
  async getKyberPreKey(id) {
    const r = this.records.get(id);
    if (r === undefined) throw new Error(`no kyber prekey ${id}`);
    return KyberPreKeyRecord.deserialize(r);
  }
  // Signed Kyber prekeys here are all "last resort" keys: they are kept after
  // use, and each use is recorded so a test can see which base key used it.
  async markKyberPreKeyUsed(id, signedPreKeyId, baseKey) {
    this.used.push({
      kyber_prekey_id: id,
      signed_prekey_id: signedPreKeyId,
      base_key: b64(baseKey.serialize()),
    });
  }
}

class MemorySenderKeyStore extends SignalClient.SenderKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  key(sender, distributionId) {
    return `${addrKey(sender)}/${distributionId}`;
  }
  async saveSenderKey(sender, distributionId, record) {
    this.records.set(this.key(sender, distributionId), record.serialize());
  }
  async getSenderKey(sender, distributionId) {
    const r = this.records.get(this.key(sender, distributionId));
    return r === undefined ? null : SenderKeyRecord.deserialize(r);
  }
}

class Party {
  constructor(privateKey, registrationId) {
    this.identity = new MemoryIdentityStore(privateKey, registrationId);
    this.sessions = new MemorySessionStore();
    this.prekeys = new MemoryPreKeyStore();
    this.signedPrekeys = new MemorySignedPreKeyStore();
    this.kyberPrekeys = new MemoryKyberPreKeyStore();
    this.senderKeys = new MemorySenderKeyStore();
  }

  async generateBundle(deviceId, prekeyId, signedPrekeyId, kyberPrekeyId, withPrekey) {
    const identity = this.identity.privateKey;
    const now = Date.now();
    const bundle = {
      registration_id: this.identity.registrationId,
      device_id: deviceId,
      identity_key: b64(identity.getPublicKey().serialize()),
    };
    if (withPrekey) {
      const pk = PrivateKey.generate();
      await this.prekeys.savePreKey(prekeyId, PreKeyRecord.new(prekeyId, pk.getPublicKey(), pk));
      bundle.prekey_id = prekeyId;
      bundle.prekey_public = b64(pk.getPublicKey().serialize());
    }
    const spk = PrivateKey.generate();
    const spkSig = identity.sign(spk.getPublicKey().serialize());
    await this.signedPrekeys.saveSignedPreKey(
      signedPrekeyId,
      SignedPreKeyRecord.new(signedPrekeyId, now, spk.getPublicKey(), spk, spkSig),
    );
    bundle.signed_prekey_id = signedPrekeyId;
    bundle.signed_prekey_public = b64(spk.getPublicKey().serialize());
    bundle.signed_prekey_signature = b64(spkSig);
    const kyber = KEMKeyPair.generate();
    const kyberSig = identity.sign(kyber.getPublicKey().serialize());
    await this.kyberPrekeys.saveKyberPreKey(
      kyberPrekeyId,
      KyberPreKeyRecord.new(kyberPrekeyId, now, kyber, kyberSig),
    );
    bundle.kyber_prekey_id = kyberPrekeyId;
    bundle.kyber_prekey_public = b64(kyber.getPublicKey().serialize());
    bundle.kyber_prekey_signature = b64(kyberSig);
    return bundle;
  }

  async encrypt(addr, plaintext) {
    return SignalClient.signalEncrypt(plaintext, addr, this.sessions, this.identity);
  }

  async decrypt(addr, type, ciphertext) {
    switch (type) {
      case CiphertextMessageType.Whisper:
        return SignalClient.signalDecrypt(
          SignalMessage.deserialize(ciphertext), addr, this.sessions, this.identity);
      case CiphertextMessageType.PreKey:
        return SignalClient.signalDecryptPreKey(
          PreKeySignalMessage.deserialize(ciphertext), addr, this.sessions, this.identity,
          this.prekeys, this.signedPrekeys, this.kyberPrekeys);
      default:
        throw new Error(`unknown message type ${type}`);
    }
  }
}

function parseBundle(b) {
  if (b === undefined || b === null || typeof b !== 'object') throw new Error('missing field bundle');
  const prekeyPublic = bytes(b, 'prekey_public', { optional: true });
  const hasPrekey = prekeyPublic !== null && prekeyPublic.length > 0;
  return PreKeyBundle.new(
    uint(b, 'registration_id'),
    uint(b, 'device_id'),
    hasPrekey ? uint(b, 'prekey_id') : null,
    hasPrekey ? PublicKey.deserialize(prekeyPublic) : null,
    uint(b, 'signed_prekey_id'),
    PublicKey.deserialize(bytes(b, 'signed_prekey_public')),
    bytes(b, 'signed_prekey_signature'),
    PublicKey.deserialize(bytes(b, 'identity_key')),
    uint(b, 'kyber_prekey_id'),
    KEMPublicKey.deserialize(bytes(b, 'kyber_prekey_public')),
    bytes(b, 'kyber_prekey_signature'),
  );
}

// ---------------------------------------------------------------------------
// Ops.

const parties = new Map();

function party(args) {
  const name = str(args, 'party');
  const p = parties.get(name);
  if (p === undefined) throw new Error(`unknown party ${JSON.stringify(name)}`);
  return p;
}

function randomRegistrationId() {
  // libsignal registration ids are 14 bits, never 0.
  return 1 + Math.floor(Math.random() * 16380);
}

const ops = {
  async hello() {
    return { libsignal_version: libsignalVersion, node_version: process.versions.node };
  },

  async new_party(args) {
    const name = str(args, 'party');
    if (parties.has(name)) throw new Error(`party ${JSON.stringify(name)} exists`);
    const priv = args.identity_private
      ? PrivateKey.deserialize(bytes(args, 'identity_private'))
      : PrivateKey.generate();
    const regId = uint(args, 'registration_id', { optional: true }) ?? randomRegistrationId();
    parties.set(name, new Party(priv, regId));
    return { identity_key: b64(priv.getPublicKey().serialize()), registration_id: regId };
  },

  async identity(args) {
    const p = party(args);
    return {
      identity_key: b64(p.identity.privateKey.getPublicKey().serialize()),
      identity_private: b64(p.identity.privateKey.serialize()),
      registration_id: p.identity.registrationId,
    };
  },

  async generate_bundle(args) {
    const p = party(args);
    return p.generateBundle(
      uint(args, 'device_id'),
      args.no_prekey ? 0 : uint(args, 'prekey_id'),
      uint(args, 'signed_prekey_id'),
      uint(args, 'kyber_prekey_id'),
      !args.no_prekey,
    );
  },

  async process_bundle(args) {
    const p = party(args);
    await SignalClient.processPreKeyBundle(parseBundle(args.bundle), address(args), p.sessions, p.identity);
    return {};
  },

  async encrypt(args) {
    const p = party(args);
    const msg = await p.encrypt(address(args), bytes(args, 'plaintext'));
    return { type: msg.type(), ciphertext: b64(msg.serialize()) };
  },

  async decrypt(args) {
    const p = party(args);
    const pt = await p.decrypt(address(args), uint(args, 'type'), bytes(args, 'ciphertext'));
    return { plaintext: b64(pt) };
  },

  async session_info(args) {
    const p = party(args);
    const rec = await p.sessions.getSession(address(args));
    if (rec === null) return { exists: false };
    const current = rec.hasCurrentState();
    return {
      exists: true,
      has_current_state: current,
      // libsignal only knows the registration ids of a current session.
      ...(current ? {
        local_registration_id: rec.localRegistrationId(),
        remote_registration_id: rec.remoteRegistrationId(),
      } : {}),
      record: b64(rec.serialize()),
    };
  },

  async session_archive(args) {
    const p = party(args);
    const addr = address(args);
    const rec = await p.sessions.getSession(addr);
    if (rec === null) throw new Error('no session');
    rec.archiveCurrentState();
    await p.sessions.saveSession(addr, rec);
    return {};
  },

  async save_identity(args) {
    const p = party(args);
    const change = await p.identity.saveIdentity(
      address(args), PublicKey.deserialize(bytes(args, 'identity_key')));
    return { replaced: change === IdentityChange.ReplacedExisting };
  },

  async get_identity(args) {
    const p = party(args);
    const k = await p.identity.getIdentity(address(args));
    return k === null ? {} : { identity_key: b64(k.serialize()) };
  },

  async prekey_state(args) {
    const p = party(args);
    return {
      prekey_ids: [...p.prekeys.records.keys()],
      signed_prekey_ids: [...p.signedPrekeys.records.keys()],
      kyber_prekey_ids: [...p.kyberPrekeys.records.keys()],
      kyber_used: p.kyberPrekeys.used,
    };
  },

  async sk_create(args) {
    const p = party(args);
    const skdm = await SenderKeyDistributionMessage.create(
      address(args, 'sender'), str(args, 'distribution_id'), p.senderKeys);
    return { skdm: b64(skdm.serialize()) };
  },

  async sk_process(args) {
    const p = party(args);
    await SignalClient.processSenderKeyDistributionMessage(
      address(args, 'sender'), SenderKeyDistributionMessage.deserialize(bytes(args, 'skdm')), p.senderKeys);
    return {};
  },

  async group_encrypt(args) {
    const p = party(args);
    const msg = await SignalClient.groupEncrypt(
      address(args, 'sender'), str(args, 'distribution_id'), p.senderKeys, bytes(args, 'plaintext'));
    return { ciphertext: b64(msg.serialize()) };
  },

  async group_decrypt(args) {
    const p = party(args);
    const pt = await SignalClient.groupDecrypt(address(args, 'sender'), p.senderKeys, bytes(args, 'ciphertext'));
    return { plaintext: b64(pt) };
  },

  // A group message as a libsignal client sends it without multi-recipient sealed
  // sender: one groupEncrypt, then that one SenderKeyMessage sealed (sealed sender v1,
  // content type SenderKey, with the group id) for each recipient device.
  async group_sealed_encrypt(args) {
    const p = party(args);
    const msg = await SignalClient.groupEncrypt(
      address(args, 'sender'), str(args, 'distribution_id'), p.senderKeys, bytes(args, 'plaintext'));
    const usmc = UnidentifiedSenderMessageContent.new(
      msg, SenderCertificate.deserialize(bytes(args, 'sender_certificate')),
      uint(args, 'content_hint', { optional: true }) ?? 0, bytes(args, 'group_id', { optional: true }));
    const recipients = args.recipients;
    if (!Array.isArray(recipients)) throw new Error('missing field recipients');
    const sealed = [];
    for (let i = 0; i < recipients.length; i++) {
      sealed.push(b64(await SignalClient.sealedSenderEncrypt(usmc, address(recipients, i), p.identity)));
    }
    return { message: b64(msg.serialize()), sealed };
  },

  // Opens a sealed group message as a libsignal client does: the sealed layers, the
  // sender certificate against the trust root at timestamp, then the SenderKeyMessage
  // under the sender the certificate names. Anything but content type SenderKey is refused.
  async group_sealed_decrypt(args) {
    const p = party(args);
    const usmc = await SignalClient.sealedSenderDecryptToUsmc(bytes(args, 'ciphertext'), p.identity);
    const cert = usmc.senderCertificate();
    if (!cert.validate(PublicKey.deserialize(bytes(args, 'trust_root')),
      uint(args, 'timestamp', { max: Number.MAX_SAFE_INTEGER }))) {
      throw new Error('sender certificate is not valid');
    }
    if (usmc.msgType() !== CiphertextMessageType.SenderKey) {
      throw new Error(`sealed content type ${usmc.msgType()} is not SenderKey`);
    }
    const sender = ProtocolAddress.new(cert.senderUuid(), cert.senderDeviceId());
    const pt = await SignalClient.groupDecrypt(sender, p.senderKeys, usmc.contents());
    const groupId = usmc.groupId();
    return {
      plaintext: b64(pt),
      sender_uuid: cert.senderUuid(),
      sender_device_id: cert.senderDeviceId(),
      content_hint: usmc.contentHint(),
      ...(groupId ? { group_id: b64(groupId) } : {}),
    };
  },

  async sealed_encrypt(args) {
    const p = party(args);
    const ct = await SignalClient.sealedSenderEncryptMessage(
      bytes(args, 'plaintext'), address(args),
      SenderCertificate.deserialize(bytes(args, 'sender_certificate')), p.sessions, p.identity);
    return { ciphertext: b64(ct) };
  },

  async sealed_decrypt(args) {
    const p = party(args);
    const r = await SignalClient.sealedSenderDecryptMessage(
      bytes(args, 'ciphertext'), PublicKey.deserialize(bytes(args, 'trust_root')),
      uint(args, 'timestamp', { max: Number.MAX_SAFE_INTEGER }), str(args, 'local_e164', { optional: true }),
      str(args, 'local_uuid'), uint(args, 'local_device_id'),
      p.sessions, p.identity, p.prekeys, p.signedPrekeys, p.kyberPrekeys);
    return {
      plaintext: b64(r.message()),
      sender_uuid: r.senderUuid(),
      sender_e164: r.senderE164(),
      sender_device_id: r.deviceId(),
    };
  },

  async sealed_decrypt_to_usmc(args) {
    const p = party(args);
    const usmc = await SignalClient.sealedSenderDecryptToUsmc(bytes(args, 'ciphertext'), p.identity);
    const groupId = usmc.groupId();
    return {
      msg_type: usmc.msgType(),
      contents: b64(usmc.contents()),
      sender_certificate: b64(usmc.senderCertificate().serialize()),
      content_hint: usmc.contentHint(),
      ...(groupId ? { group_id: b64(groupId) } : {}),
    };
  },

  async keypair_generate() {
    const k = PrivateKey.generate();
    return { private: b64(k.serialize()), public: b64(k.getPublicKey().serialize()) };
  },

  async public_key(args) {
    return { public_key: b64(PrivateKey.deserialize(bytes(args, 'private_key')).getPublicKey().serialize()) };
  },

  async xeddsa_sign(args) {
    const k = PrivateKey.deserialize(bytes(args, 'private_key'));
    return { signature: b64(k.sign(bytes(args, 'message'))) };
  },

  async xeddsa_verify(args) {
    const k = PublicKey.deserialize(bytes(args, 'public_key'));
    return { valid: k.verify(bytes(args, 'message'), bytes(args, 'signature')) };
  },

  async agree(args) {
    const k = PrivateKey.deserialize(bytes(args, 'private_key'));
    return { shared_secret: b64(k.agree(PublicKey.deserialize(bytes(args, 'public_key')))) };
  },

  async kyber_keypair() {
    const kp = KEMKeyPair.generate();
    return { public: b64(kp.getPublicKey().serialize()), secret: b64(kp.getSecretKey().serialize()) };
  },

  async hkdf(args) {
    return {
      okm: b64(SignalClient.hkdf(uint(args, 'length'), bytes(args, 'ikm'), bytes(args, 'info'),
        bytes(args, 'salt', { optional: true }))),
    };
  },

  async fingerprint(args) {
    const fp = Fingerprint.new(
      uint(args, 'iterations'), uint(args, 'version'),
      bytes(args, 'local_id'), PublicKey.deserialize(bytes(args, 'local_key')),
      bytes(args, 'remote_id'), PublicKey.deserialize(bytes(args, 'remote_key')));
    return {
      displayable: fp.displayableFingerprint().toString(),
      scannable: b64(fp.scannableFingerprint().toBuffer()),
    };
  },

  async fingerprint_compare(args) {
    const a = SignalClient.ScannableFingerprint._fromBuffer(bytes(args, 'a'));
    const b = SignalClient.ScannableFingerprint._fromBuffer(bytes(args, 'b'));
    return { equal: a.compare(b) };
  },

  async sender_certificate(args) {
    const trustRoot = PrivateKey.deserialize(bytes(args, 'trust_root_private'));
    const serverKey = PrivateKey.deserialize(bytes(args, 'server_key_private'));
    const serverCert = ServerCertificate.new(uint(args, 'server_key_id'), serverKey.getPublicKey(), trustRoot);
    const senderCert = SenderCertificate.new(
      str(args, 'sender_uuid'), str(args, 'sender_e164', { optional: true }), uint(args, 'sender_device_id'),
      PublicKey.deserialize(bytes(args, 'sender_identity_key')),
      uint(args, 'expiration', { max: Number.MAX_SAFE_INTEGER }), serverCert, serverKey);
    return { server_certificate: b64(serverCert.serialize()), sender_certificate: b64(senderCert.serialize()) };
  },

  async sender_certificate_validate(args) {
    const cert = SenderCertificate.deserialize(bytes(args, 'sender_certificate'));
    return {
      valid: cert.validate(PublicKey.deserialize(bytes(args, 'trust_root')),
        uint(args, 'time', { max: Number.MAX_SAFE_INTEGER })),
    };
  },

  async parse_signal_message(args) {
    const m = SignalMessage.deserialize(bytes(args, 'message'));
    return { version: m.messageVersion(), counter: m.counter(), body: b64(m.body()), pq_ratchet: b64(m.pqRatchet()) };
  },

  async parse_prekey_message(args) {
    const m = PreKeySignalMessage.deserialize(bytes(args, 'message'));
    return {
      version: m.version(),
      registration_id: m.registrationId(),
      ...(m.preKeyId() === null ? {} : { prekey_id: m.preKeyId() }),
      signed_prekey_id: m.signedPreKeyId(),
    };
  },

  async build_signal_message(args) {
    const m = SignalMessage._new(
      uint(args, 'version', { max: 255 }), bytes(args, 'mac_key'),
      PublicKey.deserialize(bytes(args, 'sender_ratchet_key')),
      uint(args, 'counter'), uint(args, 'previous_counter'), bytes(args, 'ciphertext'),
      PublicKey.deserialize(bytes(args, 'sender_identity_key')),
      PublicKey.deserialize(bytes(args, 'receiver_identity_key')),
      bytes(args, 'pq_ratchet', { optional: true }) ?? new Uint8Array(0));
    return { message: b64(m.serialize()) };
  },

  async verify_mac(args) {
    const m = SignalMessage.deserialize(bytes(args, 'message'));
    return {
      valid: m.verifyMac(PublicKey.deserialize(bytes(args, 'sender_identity_key')),
        PublicKey.deserialize(bytes(args, 'receiver_identity_key')), bytes(args, 'mac_key')),
    };
  },

  async parse_skdm(args) {
    const m = SenderKeyDistributionMessage.deserialize(bytes(args, 'skdm'));
    return {
      distribution_id: m.distributionId(), chain_id: m.chainId(), iteration: m.iteration(),
      chain_key: b64(m.chainKey()),
    };
  },

  async build_skdm(args) {
    const m = SenderKeyDistributionMessage._new(
      uint(args, 'version', { max: 255 }), str(args, 'distribution_id'), uint(args, 'chain_id'),
      uint(args, 'iteration'), bytes(args, 'chain_key'), PublicKey.deserialize(bytes(args, 'signing_key')));
    return { skdm: b64(m.serialize()) };
  },

  async build_sender_key_message(args) {
    const m = SenderKeyMessage._new(
      uint(args, 'version', { max: 255 }), str(args, 'distribution_id'), uint(args, 'chain_id'),
      uint(args, 'iteration'), bytes(args, 'ciphertext'), PrivateKey.deserialize(bytes(args, 'signing_private')));
    return { message: b64(m.serialize()) };
  },

  async parse_sender_key_message(args) {
    const m = SenderKeyMessage.deserialize(bytes(args, 'message'));
    const out = {
      distribution_id: m.distributionId(), chain_id: m.chainId(), iteration: m.iteration(),
      body: b64(m.ciphertext()),
    };
    const key = bytes(args, 'signing_key', { optional: true });
    if (key !== null) out.signature_valid = m.verifySignature(PublicKey.deserialize(key));
    return out;
  },

  async bench(args) {
    const n = uint(args, 'n');
    if (n === 0) throw new Error('n must be positive');
    const kind = str(args, 'kind');
    const fn = benches[kind];
    if (fn === undefined) throw new Error(`unknown bench kind ${JSON.stringify(kind)}`);
    return fn(n);
  },

  async quit() {
    quitting = true;
    return {};
  },
};

// ---------------------------------------------------------------------------
// Benchmarks: two in-process libsignal parties, stores as above, so the rate
// includes the JS store round trips a real libsignal-based client also pays.

const benchMessage = new Uint8Array(256).fill(0x61);

async function benchPair() {
  const alice = new Party(PrivateKey.generate(), randomRegistrationId());
  const bob = new Party(PrivateKey.generate(), randomRegistrationId());
  const aliceAddr = ProtocolAddress.new('aaaaaaaa-0000-4000-8000-000000000001', 1);
  const bobAddr = ProtocolAddress.new('bbbbbbbb-0000-4000-8000-000000000002', 1);
  const bundle = parseBundle(await bob.generateBundle(1, 1, 1, 1, true));
  await SignalClient.processPreKeyBundle(bundle, bobAddr, alice.sessions, alice.identity);
  const first = await alice.encrypt(bobAddr, benchMessage);
  await bob.decrypt(aliceAddr, first.type(), first.serialize());
  // Bob answers so Alice's session is fully established (no more PreKey messages).
  const reply = await bob.encrypt(aliceAddr, benchMessage);
  await alice.decrypt(bobAddr, reply.type(), reply.serialize());
  return { alice, bob, aliceAddr, bobAddr };
}

async function timed(n, body) {
  // A short warm-up so the JIT and native allocations settle.
  for (let i = 0; i < Math.min(n, 20); i++) await body(i);
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await body(i);
  const elapsed = process.hrtime.bigint() - start;
  return { n, ns_per_op: Number(elapsed / BigInt(n)) };
}

function check(pt) {
  if (!Buffer.from(pt).equals(Buffer.from(benchMessage))) throw new Error('bench: plaintext mismatch');
}

const benches = {
  // Encrypt and decrypt of a 256-byte message, always Alice -> Bob: one chain.
  async one_chain(n) {
    const { alice, bob, aliceAddr, bobAddr } = await benchPair();
    return timed(n, async () => {
      const m = await alice.encrypt(bobAddr, benchMessage);
      check(await bob.decrypt(aliceAddr, m.type(), m.serialize()));
    });
  },
  // Encrypt and decrypt, alternating direction so every message carries a DH ratchet step.
  async ratchet_step(n) {
    const { alice, bob, aliceAddr, bobAddr } = await benchPair();
    return timed(n, async (i) => {
      const [from, to, fromAddr, toAddr] = i % 2 === 0
        ? [alice, bob, aliceAddr, bobAddr] : [bob, alice, bobAddr, aliceAddr];
      const m = await from.encrypt(toAddr, benchMessage);
      check(await to.decrypt(fromAddr, m.type(), m.serialize()));
    });
  },
  // Sender-side session setup: processPreKeyBundle and the first encrypt.
  async setup(n) {
    const alice = new Party(PrivateKey.generate(), randomRegistrationId());
    const bob = new Party(PrivateKey.generate(), randomRegistrationId());
    const bobAddr = ProtocolAddress.new('bbbbbbbb-0000-4000-8000-000000000002', 1);
    const bundle = parseBundle(await bob.generateBundle(1, 1, 1, 1, true));
    return timed(n, async () => {
      await SignalClient.processPreKeyBundle(bundle, bobAddr, alice.sessions, alice.identity);
      const m = await alice.encrypt(bobAddr, benchMessage);
      if (m.type() !== CiphertextMessageType.PreKey) throw new Error('bench: expected a PreKey message');
    });
  },
  // Sender-key encrypt and decrypt of a 256-byte message.
  async group(n) {
    const alice = new Party(PrivateKey.generate(), randomRegistrationId());
    const bob = new Party(PrivateKey.generate(), randomRegistrationId());
    const aliceAddr = ProtocolAddress.new('aaaaaaaa-0000-4000-8000-000000000001', 1);
    const dist = 'dddddddd-0000-4000-8000-000000000003';
    const skdm = await SenderKeyDistributionMessage.create(aliceAddr, dist, alice.senderKeys);
    await SignalClient.processSenderKeyDistributionMessage(
      aliceAddr, SenderKeyDistributionMessage.deserialize(skdm.serialize()), bob.senderKeys);
    return timed(n, async () => {
      const m = await SignalClient.groupEncrypt(aliceAddr, dist, alice.senderKeys, benchMessage);
      check(await SignalClient.groupDecrypt(aliceAddr, bob.senderKeys, m.serialize()));
    });
  },
};

// ---------------------------------------------------------------------------
// Main loop: one request at a time, in order.

let quitting = false;

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    reply({ id: null, ok: false, error: `bad request line: ${e.message}`, code: '' });
    return;
  }
  const id = req !== null && typeof req === 'object' ? req.id ?? null : null;
  try {
    if (req === null || typeof req !== 'object' || Array.isArray(req)) throw new Error('request is not an object');
    const fn = Object.hasOwn(ops, req.op) ? ops[req.op] : undefined;
    if (fn === undefined) throw new Error(`unknown op ${JSON.stringify(req.op)}`);
    const result = await fn(req);
    reply({ ...result, id, ok: true });
  } catch (e) {
    const code = e instanceof LibSignalErrorBase ? (SignalClient.ErrorCode[e.code] ?? 'Generic') : '';
    reply({ id, ok: false, error: String(e && e.message ? e.message : e), code });
  }
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
let chain = Promise.resolve();
rl.on('line', (line) => {
  if (line.trim() === '') return;
  chain = chain.then(() => handle(line)).then(() => {
    if (quitting) process.exit(0);
  });
});
rl.on('close', () => {
  chain.then(() => process.exit(0));
});
