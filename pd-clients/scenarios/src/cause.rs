//! Why the server refused a request, when the configuration is the
//! reason: what it says, and the file and line where it says it, from the
//! locations the generated configuration carries (`Origin`). A refusal
//! the configuration does not explain gets no cause: the errno's own
//! meaning is then all there is to say.

use core::fmt;

use iommu_client::Error;
use iommu_proto::{Errno, Op};
use iommu_types::config::Storage;
use iommu_types::system::{ClientSpec, RegionSpec};

/// What a refused request was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A mapping of the client's DMA region `region` (its index among the
    /// client's regions), writable by the device when `write`.
    Map { region: usize, write: bool },
    /// The client's device `index` (BIND's index).
    Device(usize),
    /// Something the client allocates for itself: an IOAS, a HWPT (an
    /// ATTACH makes one).
    Object,
}

/// The configuration's part in a refusal. Displays as what the
/// configuration says, then where: `(iommu.xml:9: <quota ...>)`.
#[derive(Clone, Copy, Debug)]
pub enum Cause<'a, S: Storage, C> {
    /// The device asked to write to a region its driver may only read.
    ReadOnly {
        client: &'a ClientSpec<S, C>,
        region: &'a RegionSpec<S>,
    },
    /// The client's quota leaves nothing for the request: `limits` are
    /// the `<quota>` attributes that bound it.
    Quota {
        client: &'a ClientSpec<S, C>,
        limits: &'static [Limit],
    },
    /// BIND of a device index the client's configuration does not have.
    NoDevice {
        client: &'a ClientSpec<S, C>,
        index: usize,
    },
}

/// One `<quota>` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Objects,
    Ioases,
    MappedPages,
    TablePages,
    Hwpts,
    Mappings,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Objects => "objects",
            Limit::Ioases => "ioases",
            Limit::MappedPages => "mapped_pages",
            Limit::TablePages => "table_pages",
            Limit::Hwpts => "hwpts",
            Limit::Mappings => "mappings",
        }
    }

    fn of<S: Storage, C>(self, client: &ClientSpec<S, C>) -> u64 {
        let q = &client.quota;
        let n = match self {
            Limit::Objects => q.objects,
            Limit::Ioases => q.ioases,
            Limit::MappedPages => return q.mapped_pages,
            Limit::TablePages => q.table_pages,
            Limit::Hwpts => q.hwpts,
            Limit::Mappings => q.mappings,
        };
        n as u64
    }
}

/// The quota limits that bound each request the server may refuse for
/// want of room (ENOMEM): every object counts against `objects`, an IOAS
/// against `ioases`, a HWPT against `hwpts` and its page tables, a
/// mapping against `mappings`, `mapped_pages` and the page tables.
fn limits(op: Op) -> Option<&'static [Limit]> {
    Some(match op {
        Op::VfioDeviceBindIommufd => &[Limit::Objects],
        Op::IoasAlloc => &[Limit::Objects, Limit::Ioases],
        Op::HwptAlloc | Op::VfioDeviceAttachIommufdPt => {
            &[Limit::Objects, Limit::Hwpts, Limit::TablePages]
        }
        Op::IoasMap | Op::IoasCopy | Op::VfioIommuMapDma => {
            &[Limit::MappedPages, Limit::Mappings, Limit::TablePages]
        }
        _ => return None,
    })
}

impl Subject {
    /// What a driver's request about its device 0 and its DMA region
    /// `region` (mapped for the device to read and write) was about, by
    /// the request refused.
    pub fn of_driver_request(op: Op, region: usize) -> Subject {
        match op {
            Op::VfioDeviceBindIommufd => Subject::Device(0),
            Op::IoasMap | Op::VfioIommuMapDma => Subject::Map {
                region,
                write: true,
            },
            _ => Subject::Object,
        }
    }
}

/// Writes that the server refused `step` of `object`, with the request
/// and errno by name and what the errno means, and, on a line of its
/// own, the cause when `client`'s configuration is it.
pub fn say_refused<S: Storage, C>(
    out: &mut impl fmt::Write,
    client: &ClientSpec<S, C>,
    subject: Subject,
    step: &str,
    object: &str,
    e: Error,
) {
    let _ = writeln!(out, "refused: {step} of {object}: {e}");
    if let Some(why) = cause(client, subject, e) {
        let _ = writeln!(out, "because {why}");
    }
}

/// What in `client`'s configuration made the server refuse `e`, a
/// request about `subject`, if anything did.
pub fn cause<S: Storage, C>(
    client: &ClientSpec<S, C>,
    subject: Subject,
    e: Error,
) -> Option<Cause<'_, S, C>> {
    match (subject, e.errno) {
        (Subject::Map { region, write }, Errno::EFAULT | Errno::EPERM) => {
            let region = client.regions.get(region)?;
            (write && !region.perms.write).then_some(Cause::ReadOnly { client, region })
        }
        (Subject::Device(index), Errno::ENODEV) if index >= client.devices.len() => {
            Some(Cause::NoDevice { client, index })
        }
        (_, Errno::ENOMEM) => Some(Cause::Quota {
            client,
            limits: limits(e.op)?,
        }),
        _ => None,
    }
}

impl<S: Storage, C> fmt::Display for Cause<'_, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::ReadOnly { client, region } => write!(
                f,
                "{mr} is read-only for devices: {pd} maps it without \"w\", and a device gets no more than its driver has ({at}: <map mr=\"{mr}\">)",
                mr = region.mr.as_ref(),
                pd = client.pd.as_ref(),
                at = region.map,
            ),
            Cause::Quota { client, limits } => {
                write!(
                    f,
                    "{} has used what its quota allows ({}: <quota",
                    client.pd.as_ref(),
                    client.quota_origin
                )?;
                for l in *limits {
                    write!(f, " {}=\"{}\"", l.name(), l.of(*client))?;
                }
                write!(f, ">)")
            }
            Cause::NoDevice { client, index } => {
                let n = client.devices.len();
                write!(
                    f,
                    "{} has {n} device{} configured, so none at index {index} ({}: <client pd=\"{}\">)",
                    client.pd.as_ref(),
                    if n == 1 { "" } else { "s" },
                    client.origin,
                    client.pd.as_ref()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_types::config::{DeviceConfig, Perms, Quota, Static};
    use iommu_types::system::{Origin, Paddr};
    use iommu_types::StreamId;

    const fn at(file: &'static str, line: u32) -> Origin<Static> {
        Origin { file, line }
    }

    const REGIONS: [RegionSpec<Static>; 1] = [RegionSpec {
        mr: "blk_x_data",
        vaddr: 0x3000_0000,
        size: 0x1_0000,
        perms: Perms::RO,
        paddr: Paddr::Fixed(0x6000_0000),
        strict: false,
        shared_with: None,
        share: None,
        origin: at("iommu.xml", 12),
        memory_region: at("system.xml", 20),
        map: at("system.xml", 57),
    }];

    const CLIENT: ClientSpec<Static, u64> = ClientSpec {
        pd: "blk_x",
        server_channel: 1,
        client_channel: 0,
        command_page: "blk_x_command",
        command_page_server: 0x2000_0000,
        command_page_client: 0x2000_0000,
        regions: &REGIONS,
        devices: &[DeviceConfig {
            name: "nvme",
            stream_id: StreamId(8),
            dma_mask: u64::MAX,
            reserved: &[],
        }],
        device_config_pages: &[None],
        device_origins: &[at("iommu.xml", 14)],
        quota: Quota {
            objects: 8,
            ioases: 2,
            mapped_pages: 64,
            table_pages: 8,
            hwpts: 2,
            mappings: 16,
        },
        quota_origin: at("iommu.xml", 11),
        manager: false,
        disk_blocks: None,
        child_of: None,
        program_image: "",
        origin: at("iommu.xml", 10),
    };

    fn said(subject: Subject, op: Op, errno: Errno) -> Option<std::string::String> {
        cause(&CLIENT, subject, Error::new(op, errno)).map(|c| std::format!("{c}"))
    }

    extern crate std;

    #[test]
    fn a_read_only_region_cites_its_map() {
        let write = Subject::Map {
            region: 0,
            write: true,
        };
        assert_eq!(
            said(write, Op::IoasMap, Errno::EFAULT).as_deref(),
            Some("blk_x_data is read-only for devices: blk_x maps it without \"w\", and a device gets no more than its driver has (system.xml:57: <map mr=\"blk_x_data\">)")
        );
        let read = Subject::Map {
            region: 0,
            write: false,
        };
        assert_eq!(said(read, Op::IoasMap, Errno::EFAULT), None, "not why");
    }

    #[test]
    fn running_out_cites_the_quota() {
        let map = Subject::Map {
            region: 0,
            write: false,
        };
        assert_eq!(
            said(map, Op::IoasMap, Errno::ENOMEM).as_deref(),
            Some("blk_x has used what its quota allows (iommu.xml:11: <quota mapped_pages=\"64\" mappings=\"16\" table_pages=\"8\">)")
        );
        assert_eq!(
            said(Subject::Object, Op::IoasAlloc, Errno::ENOMEM).as_deref(),
            Some("blk_x has used what its quota allows (iommu.xml:11: <quota objects=\"8\" ioases=\"2\">)")
        );
        assert_eq!(said(Subject::Object, Op::IoasUnmap, Errno::ENOMEM), None);
    }

    #[test]
    fn an_unconfigured_device_cites_the_client() {
        assert_eq!(
            said(Subject::Device(1), Op::VfioDeviceBindIommufd, Errno::ENODEV).as_deref(),
            Some("blk_x has 1 device configured, so none at index 1 (iommu.xml:10: <client pd=\"blk_x\">)")
        );
        assert_eq!(
            said(Subject::Device(0), Op::VfioDeviceBindIommufd, Errno::ENODEV),
            None,
            "configured: something else refused it"
        );
    }
}
