//! NVML (`libnvidia-ml`), loaded at run time like the rest of the CUDA stack, for what benchmarks
//! report beside times: the board's energy counter and its power limit. A GPU runs power-capped
//! through a large forward (an H100 at 700 W, its SM clock well under boost), so joules per
//! forward and the mean power tell a host's figures apart where time alone does not. Without the
//! library (a container without the driver's files) or the counter (before Volta) there is none.

use std::ffi::{CString, c_char, c_int, c_uint, c_ulonglong, c_void};

use libloading::Library;

type NvmlDevice = *mut c_void;
type Return = c_int;
const SUCCESS: Return = 0;

pub(crate) struct Nvml {
    lib: Library,
    device: NvmlDevice,
}

// SAFETY: NVML's calls are thread-safe, and the device handle is an opaque token valid until
// `nvmlShutdown`, which only `drop` calls.
unsafe impl Send for Nvml {}
unsafe impl Sync for Nvml {}

impl Nvml {
    /// The device at `pci_bus_id` (as `cuDeviceGetPCIBusId` writes it), if NVML is there and the
    /// device has an energy counter.
    pub fn open(pci_bus_id: &str) -> Option<Nvml> {
        // SAFETY: loading the driver's NVML runs no initialisation of its own.
        let lib = unsafe { Library::new("libnvidia-ml.so.1") }.ok()?;
        // SAFETY: `nvmlInit_v2` has the C signature declared and no preconditions.
        let init = unsafe { lib.get::<unsafe extern "C" fn() -> Return>(b"nvmlInit_v2\0") }.ok()?;
        // SAFETY: as above.
        if unsafe { init() } != SUCCESS {
            return None;
        }
        // From here `drop` shuts NVML down again, whatever fails.
        let mut nvml = Nvml {
            lib,
            device: std::ptr::null_mut(),
        };
        let id = CString::new(pci_bus_id).ok()?;
        type ByBus = unsafe extern "C" fn(*const c_char, *mut NvmlDevice) -> Return;
        // SAFETY: the declared signature of `nvmlDeviceGetHandleByPciBusId_v2`; `id` is a
        // NUL-terminated string and `device` a valid out-pointer.
        let found = unsafe {
            let by_bus = nvml
                .lib
                .get::<ByBus>(b"nvmlDeviceGetHandleByPciBusId_v2\0")
                .ok()?;
            by_bus(id.as_ptr(), &mut nvml.device)
        };
        if found != SUCCESS {
            return None;
        }
        nvml.energy_mj()?;
        Some(nvml)
    }

    /// Energy the board has used since the driver loaded, in millijoules.
    pub fn energy_mj(&self) -> Option<u64> {
        // SAFETY: `nvmlDeviceGetTotalEnergyConsumption(device, unsigned long long*)`.
        unsafe { self.query::<c_ulonglong>(b"nvmlDeviceGetTotalEnergyConsumption\0") }
    }

    /// The power limit the board enforces, in watts.
    pub fn power_limit_w(&self) -> Option<f64> {
        // SAFETY: `nvmlDeviceGetEnforcedPowerLimit(device, unsigned int*)`, in milliwatts.
        unsafe { self.query::<c_uint>(b"nvmlDeviceGetEnforcedPowerLimit\0") }
            .map(|mw| f64::from(mw) / 1e3)
    }

    /// One of NVML's per-device queries, `symbol(device, &mut value)`, if it succeeds.
    ///
    /// # Safety
    /// `symbol` must name an NVML function of that signature whose value is a `T`.
    unsafe fn query<T: Default>(&self, symbol: &[u8]) -> Option<T> {
        let mut value = T::default();
        // SAFETY: the caller vouches for the signature; the handle is from this NVML session
        // and `value` a valid out-pointer.
        let status = unsafe {
            let f = self
                .lib
                .get::<unsafe extern "C" fn(NvmlDevice, *mut T) -> Return>(symbol)
                .ok()?;
            f(self.device, &mut value)
        };
        (status == SUCCESS).then_some(value)
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: `nvmlShutdown` balances the successful `nvmlInit_v2` of `open`.
        unsafe {
            if let Ok(shutdown) = self
                .lib
                .get::<unsafe extern "C" fn() -> Return>(b"nvmlShutdown\0")
            {
                shutdown();
            }
        }
    }
}
