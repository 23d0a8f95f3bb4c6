//! MAC commands (LoRaWAN 1.0.x §5). The network answers LinkCheckReq
//! and asks DevStatusReq (its DevStatusAns becomes readings); every other
//! command is counted and ignored: ADR is off, so the server never sends
//! LinkADRReq and devices keep the data rate and channels they chose.

/// An uplink MAC command as the network server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpCommand {
    /// 0x02: the device asks for its link margin and gateway count.
    LinkCheckReq,
    /// 0x06: battery (0 external, 1-254 level, 255 unknown) and SNR margin in dB.
    DevStatusAns {
        /// Battery level.
        battery: u8,
        /// Demodulation margin, -32..31 dB.
        margin: i8,
    },
    /// A known command the server does not act on (its CID).
    Ignored(u8),
}

/// Payload sizes of uplink commands by CID (LoRaWAN 1.0.2 §5, 1.0.3 DeviceTimeReq).
fn up_len(cid: u8) -> Option<usize> {
    Some(match cid {
        0x02 => 0, // LinkCheckReq
        0x03 => 1, // LinkADRAns
        0x04 => 0, // DutyCycleAns
        0x05 => 1, // RXParamSetupAns
        0x06 => 2, // DevStatusAns
        0x07 => 1, // NewChannelAns
        0x08 => 0, // RXTimingSetupAns
        0x09 => 0, // TxParamSetupAns
        0x0a => 1, // DlChannelAns
        0x0d => 0, // DeviceTimeReq
        _ => return None,
    })
}

/// Reads uplink MAC commands (FOpts, or FRMPayload on FPort 0). An
/// unknown CID ends the list (its length is unknown): the commands before
/// it are returned with `false`.
pub fn parse_up(mut bytes: &[u8]) -> (Vec<UpCommand>, bool) {
    let mut out = Vec::new();
    while let Some((&cid, rest)) = bytes.split_first() {
        let Some(len) = up_len(cid) else {
            return (out, false);
        };
        let Some(payload) = rest.get(..len) else {
            return (out, false);
        };
        out.push(match cid {
            0x02 => UpCommand::LinkCheckReq,
            0x06 => UpCommand::DevStatusAns {
                battery: payload[0],
                // 6-bit two's complement.
                margin: (((payload[1] & 0x3f) << 2) as i8) >> 2,
            },
            other => UpCommand::Ignored(other),
        });
        bytes = &rest[len..];
    }
    (out, true)
}

/// LinkCheckAns (0x05... CID 0x02): margin in dB above the demodulation
/// floor of the uplink's spreading factor, and how many gateways heard it.
pub fn link_check_ans(best_snr: f64, sf: u8, gateways: usize) -> [u8; 3] {
    // Demodulation floors (SX1276 datasheet, as LoRaWAN servers use them).
    let floor = match sf {
        7 => -7.5,
        8 => -10.0,
        9 => -12.5,
        10 => -15.0,
        11 => -17.5,
        _ => -20.0,
    };
    let margin = (best_snr - floor).clamp(0.0, 254.0) as u8;
    [0x02, margin, gateways.min(255) as u8]
}

/// DevStatusReq (CID 0x06, no payload).
pub const DEV_STATUS_REQ: [u8; 1] = [0x06];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_commands_parse_until_an_unknown_cid() {
        let (cmds, whole) = parse_up(&[0x02, 0x06, 0xfe, 0x3f, 0x03, 0x07]);
        assert!(whole);
        assert_eq!(
            cmds,
            vec![
                UpCommand::LinkCheckReq,
                UpCommand::DevStatusAns {
                    battery: 254,
                    margin: -1
                },
                UpCommand::Ignored(0x03),
            ]
        );
        let (cmds, whole) = parse_up(&[0x02, 0x80, 0x02]);
        assert_eq!((cmds, whole), (vec![UpCommand::LinkCheckReq], false));
        assert!(!parse_up(&[0x06, 0x01]).1, "truncated DevStatusAns");
    }

    #[test]
    fn link_check_margin_is_snr_above_the_floor() {
        assert_eq!(link_check_ans(5.0, 7, 2), [0x02, 12, 2]);
        assert_eq!(link_check_ans(-30.0, 12, 1), [0x02, 0, 1]);
    }
}
