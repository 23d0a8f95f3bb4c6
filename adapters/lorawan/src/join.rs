//! OTAA (LoRaWAN 1.0.x §6.2): the JoinRequest checked with the AppKey,
//! and the JoinAccept built, signed and "encrypted" (with AES *decrypt*,
//! as the spec has the network side do, so the device only needs
//! encrypt), and the session keys derived (§6.2.5). The lorawan crate
//! parses and checks the request; the JoinAccept is assembled here because
//! the crate's 0.9 builder drops the CFList (it never marks the list as
//! set). Tests hold both to the crate's own JoinAccept parser and key
//! derivation, and the lora-packet tests to an independent device side.

use crate::keys::{Eui64, Key};
use aes::Aes128;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit, generic_array::GenericArray};
use cmac::{Cmac, Mac};
use lorawan::parser::JoinRequestPayload;

/// A JoinRequest's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// JoinEUI (AppEUI in 1.0.x).
    pub join_eui: Eui64,
    /// The device.
    pub dev_eui: Eui64,
    /// Its nonce, as a number (wire bytes little-endian).
    pub dev_nonce: u16,
}

/// Reads a JoinRequest (23 bytes); `None` if it is not one.
pub fn parse_request(phy: &[u8]) -> Option<JoinRequest> {
    let p = JoinRequestPayload::new(phy).ok()?;
    Some(JoinRequest {
        join_eui: Eui64::from_wire(p.app_eui().as_ref())?,
        dev_eui: Eui64::from_wire(p.dev_eui().as_ref())?,
        dev_nonce: u16::from_le_bytes(p.dev_nonce().as_ref().try_into().ok()?),
    })
}

/// Whether the request's MIC is right for `app_key`.
pub fn request_mic_ok(phy: &[u8], app_key: &Key) -> bool {
    JoinRequestPayload::new(phy)
        .map(|p| p.validate_mic(&lorawan::keys::AES128(app_key.0)))
        .unwrap_or(false)
}

/// What the network answers a join with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept {
    /// The JoinAccept PHYPayload, encrypted, ready to send.
    pub phy: Vec<u8>,
    /// NwkSKey of the new session.
    pub nwk_skey: Key,
    /// AppSKey of the new session.
    pub app_skey: Key,
}

/// The JoinAccept's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptParams {
    /// AppNonce (24 bits).
    pub app_nonce: u32,
    /// NetID (24 bits).
    pub net_id: u32,
    /// The address given to the device.
    pub dev_addr: u32,
    /// DLSettings: RX1 data-rate offset (bits 6-4) and RX2 data rate (3-0).
    pub dl_settings: u8,
    /// RX1 delay in seconds (0 means 1).
    pub rx_delay: u8,
    /// Five extra channels in Hz, where the region has a CFList.
    pub cflist: Option<[u32; 5]>,
}

/// Builds the JoinAccept for a device with `app_key` that sent `dev_nonce`,
/// and derives the session keys as the device will.
pub fn accept(app_key: &Key, dev_nonce: u16, p: &AcceptParams) -> Option<Accept> {
    let mut plain = Vec::with_capacity(33);
    plain.push(0x20);
    plain.extend_from_slice(&p.app_nonce.to_le_bytes()[..3]);
    plain.extend_from_slice(&p.net_id.to_le_bytes()[..3]);
    plain.extend_from_slice(&p.dev_addr.to_le_bytes());
    plain.push(p.dl_settings);
    plain.push(p.rx_delay);
    if let Some(list) = p.cflist {
        for hz in list {
            plain.extend_from_slice(&(hz / 100).to_le_bytes()[..3]);
        }
        plain.push(0); // CFListType 0: frequencies.
    }
    let mut mac = <Cmac<Aes128> as Mac>::new_from_slice(&app_key.0).ok()?;
    mac.update(&plain);
    let tag = mac.finalize().into_bytes();
    plain.extend_from_slice(&tag[..4]);
    let cipher = Aes128::new_from_slice(&app_key.0).ok()?;
    let derive = |first: u8| -> Key {
        let mut block = [0u8; 16];
        block[0] = first;
        block[1..4].copy_from_slice(&p.app_nonce.to_le_bytes()[..3]);
        block[4..7].copy_from_slice(&p.net_id.to_le_bytes()[..3]);
        block[7..9].copy_from_slice(&dev_nonce.to_le_bytes());
        let mut b = GenericArray::clone_from_slice(&block);
        cipher.encrypt_block(&mut b);
        let mut key = [0u8; 16];
        key.copy_from_slice(&b);
        Key(key)
    };
    let (nwk_skey, app_skey) = (derive(1), derive(2));
    for block in plain[1..].chunks_exact_mut(16) {
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
    }
    Some(Accept {
        phy: plain,
        nwk_skey,
        app_skey,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lorawan::keys::AppKey;
    use lorawan::parser::{DecryptedJoinAcceptPayload, DevNonce};

    fn params(cflist: Option<[u32; 5]>) -> AcceptParams {
        AcceptParams {
            app_nonce: 0x0a0b0c,
            net_id: 0x000013,
            dev_addr: 0x2601_1b01,
            dl_settings: 0,
            rx_delay: 1,
            cflist,
        }
    }

    #[test]
    fn the_crate_decrypts_our_join_accept_and_finds_its_mic_and_fields() {
        let key = Key([0x2b; 16]);
        for cflist in [None, Some(crate::region::EU868_CFLIST)] {
            let a = accept(&key, 0x1234, &params(cflist)).expect("built");
            assert_eq!(a.phy.len(), if cflist.is_some() { 33 } else { 17 });
            let d = DecryptedJoinAcceptPayload::new(a.phy.clone(), &AppKey::from(key.0))
                .expect("MIC checks out with the AppKey");
            assert_eq!(d.dev_addr().as_ref(), &0x2601_1b01u32.to_le_bytes());
            assert_eq!(d.app_nonce().as_ref(), &[0x0c, 0x0b, 0x0a]);
            let nonce = 0x1234u16.to_le_bytes();
            let dn = DevNonce::new(&nonce[..]).expect("2 bytes");
            assert_eq!(
                d.derive_newskey(&dn, &AppKey::from(key.0)).inner().0,
                a.nwk_skey.0
            );
            assert_eq!(
                d.derive_appskey(&dn, &AppKey::from(key.0)).inner().0,
                a.app_skey.0
            );
            assert_ne!(a.nwk_skey, a.app_skey);
        }
    }

    /// LoRaWAN 1.0 key derivation, worked by hand with AES from the spec's
    /// definition: NwkSKey = aes128_encrypt(AppKey, 0x01 | AppNonce | NetID | DevNonce | pad16).
    #[test]
    fn session_keys_follow_the_spec_formula() {
        let key = Key(*b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff");
        let a = accept(&key, 0xbeef, &params(None)).expect("built");
        let cipher = Aes128::new_from_slice(&key.0).expect("key");
        let mut block = [0u8; 16];
        block[0] = 1;
        block[1..4].copy_from_slice(&[0x0c, 0x0b, 0x0a]);
        block[4..7].copy_from_slice(&[0x13, 0, 0]);
        block[7..9].copy_from_slice(&[0xef, 0xbe]);
        let mut b = GenericArray::clone_from_slice(&block);
        cipher.encrypt_block(&mut b);
        assert_eq!(&b[..], &a.nwk_skey.0);
        block[0] = 2;
        let mut b = GenericArray::clone_from_slice(&block);
        cipher.encrypt_block(&mut b);
        assert_eq!(&b[..], &a.app_skey.0);
    }
}
