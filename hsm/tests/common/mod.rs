//! Shared helpers for the SoftHSM-backed tests.
#![allow(dead_code, unreachable_pub)]
// Raw PKCS#11 calls for fault injection (the library itself forbids unsafe code).
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use esigd_hsm::testing::{TestToken, softhsm_module};

/// A second PKCS#11 handle on the same module, as another part of the process (or a confused
/// operator tool) would have. Initialising it fails with "already initialised", which is fine.
pub fn second_handle() -> Pkcs11 {
    let ctx = Pkcs11::new(softhsm_module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    ctx
}

/// The slot id holding `token`.
pub fn slot_id(token: &TestToken) -> u64 {
    let ctx = second_handle();
    for slot in ctx.get_slots_with_initialized_token().unwrap() {
        if ctx.get_token_info(slot).unwrap().label().trim_end() == token.label {
            return slot.id();
        }
    }
    panic!("token {} not found", token.label)
}

/// `C_CloseAllSessions` on the token's slot from a second handle: every session of this process
/// on that token dies behind the pool's back (and the login with them).
pub fn close_all_sessions(slot: u64) {
    // SAFETY: loads the same module the pool uses (dlopen returns the already-loaded instance) and
    // calls C_CloseAllSessions with a valid slot id; no pointers are passed. cryptoki has no safe
    // wrapper for this call, which only a test wants to make.
    let rv = unsafe {
        let lib = cryptoki_sys::Pkcs11::new(softhsm_module()).unwrap();
        lib.C_CloseAllSessions(slot)
    };
    assert_eq!(
        rv,
        cryptoki_sys::CKR_OK,
        "C_CloseAllSessions returned {rv:#x}"
    );
}

/// Counts the sessions this process has open on the token in `slot`, by asking the module about every
/// handle number up to `max_handle` (SoftHSM does not report ulSessionCount). Independent of the
/// pool's own bookkeeping.
pub fn open_sessions(slot: u64, max_handle: u64) -> usize {
    // SAFETY: C_GetSessionInfo with a handle that may be invalid is a defined PKCS#11 call (it
    // answers CKR_SESSION_HANDLE_INVALID); `info` is a valid, writable CK_SESSION_INFO.
    unsafe {
        let lib = cryptoki_sys::Pkcs11::new(softhsm_module()).unwrap();
        let mut n = 0;
        for h in 1..=max_handle {
            let mut info: cryptoki_sys::CK_SESSION_INFO = std::mem::zeroed();
            if lib.C_GetSessionInfo(h, &mut info) == cryptoki_sys::CKR_OK && info.slotID == slot {
                n += 1;
            }
        }
        n
    }
}
