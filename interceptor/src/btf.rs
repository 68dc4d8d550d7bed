//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`) that answers one question:
//! at which byte offset, and with which size, does `struct S` hold field `f`?
//!
//! The kernel programs read task, file and mm fields through these offsets, because struct
//! layouts differ between kernels (see the `KERNEL_OFFSETS` global in interceptor-ebpf) and
//! Rust eBPF programs get no CO-RE relocation. Anonymous struct and union members are
//! searched through, as the kernel nests many fields in them (`mm_struct`'s args, for one).

use std::{collections::HashMap, path::Path};

use interceptor_common::KernelOffsets;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;

/// What can go wrong reading BTF or finding a field in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("BTF is malformed: {0}")]
    Malformed(String),
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("BTF struct {strukt} has no field {field}")]
    NoField { strukt: String, field: String },
    #[error("BTF field {strukt}.{field} is a bitfield; the programs need a byte offset")]
    Bitfield { strukt: String, field: String },
    #[error("BTF field {strukt}.{field} has {found} bytes; the programs read {expected}")]
    Size {
        strukt: String,
        field: String,
        found: u32,
        expected: u32,
    },
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Debug, Clone)]
enum Type {
    /// Integers, floats and enums: just a size.
    Sized(u32),
    Ptr,
    Array {
        elem: u32,
        len: u32,
    },
    Composite {
        size: u32,
        members: Vec<Member>,
    },
    /// typedef, const, volatile, restrict, type tags: look through to `next`.
    Alias {
        next: u32,
    },
    /// Everything the field lookup never needs (functions, vars, forward declarations).
    Other,
}

/// Parsed type information.
pub struct Btf {
    /// Indexed by type id; id 0 is `void`.
    types: Vec<Type>,
    structs_by_name: HashMap<String, Vec<u32>>,
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    /// Reads BTF from a file.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses raw (little-endian) BTF.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let bad = |what: &str| BtfError::Malformed(what.to_string());
        let u16_at = |at: usize| -> Result<u16, BtfError> {
            data.get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or_else(|| bad("header cut short"))
        };
        let u32_at = |at: usize| -> Result<u32, BtfError> {
            data.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad("header cut short"))
        };
        if u16_at(0)? != BTF_MAGIC {
            return Err(bad("wrong magic (big-endian or not BTF)"));
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let section = |off: usize, len: usize, what: &str| {
            hdr_len
                .checked_add(off)
                .and_then(|start| Some((start, start.checked_add(len)?)))
                .and_then(|(start, end)| data.get(start..end))
                .ok_or_else(|| bad(what))
        };
        let types = section(type_off, type_len, "type section out of bounds")?;
        let strings = section(str_off, str_len, "string section out of bounds")?;
        let string = |off: u32| -> Result<String, BtfError> {
            let tail = strings
                .get(off as usize..)
                .ok_or_else(|| bad("string offset out of bounds"))?;
            let end = tail
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| bad("unterminated string"))?;
            Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
        };

        let mut reader = Reader { data: types, at: 0 };
        let mut parsed = vec![Type::Other]; // id 0: void
        let mut structs_by_name: HashMap<String, Vec<u32>> = HashMap::new();
        while reader.at < types.len() {
            let name_off = reader.u32()?;
            let info = reader.u32()?;
            let size_or_type = reader.u32()?;
            let vlen = info & 0xffff;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let ty = match kind {
                // INT: one more u32 of encoding
                1 => {
                    reader.skip(4)?;
                    Type::Sized(size_or_type)
                }
                2 => Type::Ptr,
                3 => {
                    let elem = reader.u32()?;
                    let _index = reader.u32()?;
                    let len = reader.u32()?;
                    Type::Array { elem, len }
                }
                4 | 5 => {
                    let mut members = Vec::with_capacity(vlen as usize);
                    for _ in 0..vlen {
                        let name = string(reader.u32()?)?;
                        let type_id = reader.u32()?;
                        let offset = reader.u32()?;
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (offset & 0xff_ffff, offset >> 24)
                        } else {
                            (offset, 0)
                        };
                        members.push(Member {
                            name,
                            type_id,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    let name = string(name_off)?;
                    if kind == 4 && !name.is_empty() {
                        structs_by_name
                            .entry(name)
                            .or_default()
                            .push(parsed.len() as u32);
                    }
                    Type::Composite {
                        size: size_or_type,
                        members,
                    }
                }
                6 => {
                    reader.skip(8 * vlen as usize)?;
                    Type::Sized(size_or_type)
                }
                7 | 12 => Type::Other,
                8..=11 | 18 => Type::Alias { next: size_or_type },
                13 => {
                    reader.skip(8 * vlen as usize)?;
                    Type::Other
                }
                14 | 17 => {
                    reader.skip(4)?;
                    Type::Other
                }
                15 => {
                    reader.skip(12 * vlen as usize)?;
                    Type::Other
                }
                16 => Type::Sized(size_or_type),
                19 => {
                    reader.skip(12 * vlen as usize)?;
                    Type::Sized(size_or_type)
                }
                other => return Err(BtfError::Malformed(format!("unknown BTF kind {other}"))),
            };
            parsed.push(ty);
        }
        Ok(Self {
            types: parsed,
            structs_by_name,
        })
    }

    /// Byte offset and size of `strukt.field`, searching anonymous members.
    pub fn field(&self, strukt: &str, field: &str) -> Result<(u32, u32), BtfError> {
        let ids = self
            .structs_by_name
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        for &id in ids {
            if let Some((bits, bitfield, type_id)) = self.find_member(id, field, 0) {
                if bitfield != 0 || bits % 8 != 0 {
                    return Err(BtfError::Bitfield {
                        strukt: strukt.into(),
                        field: field.into(),
                    });
                }
                return Ok((bits / 8, self.size_of(type_id)));
            }
        }
        Err(BtfError::NoField {
            strukt: strukt.into(),
            field: field.into(),
        })
    }

    /// Like [`Btf::field`], and checks the field has `expected` bytes.
    pub fn field_sized(&self, strukt: &str, field: &str, expected: u32) -> Result<u32, BtfError> {
        let (offset, found) = self.field(strukt, field)?;
        if found != expected {
            return Err(BtfError::Size {
                strukt: strukt.into(),
                field: field.into(),
                found,
                expected,
            });
        }
        Ok(offset)
    }

    fn find_member(&self, id: u32, field: &str, depth: u32) -> Option<(u32, u32, u32)> {
        // Kernel structs nest anonymous members a few levels deep at most.
        if depth > 8 {
            return None;
        }
        let Type::Composite { members, .. } = self.types.get(id as usize)? else {
            return None;
        };
        for m in members {
            if m.name == field {
                return Some((m.bit_offset, m.bitfield_size, m.type_id));
            }
        }
        for m in members.iter().filter(|m| m.name.is_empty()) {
            let inner = self.resolve(m.type_id);
            if let Some((bits, bitfield, ty)) = self.find_member(inner, field, depth + 1) {
                return Some((m.bit_offset + bits, bitfield, ty));
            }
        }
        None
    }

    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(Type::Alias { next }) => id = *next,
                _ => break,
            }
        }
        id
    }

    fn size_of(&self, id: u32) -> u32 {
        match self.types.get(self.resolve(id) as usize) {
            Some(Type::Sized(size)) | Some(Type::Composite { size, .. }) => *size,
            Some(Type::Ptr) => 8,
            Some(Type::Array { elem, len }) => self.size_of(*elem).saturating_mul(*len),
            _ => 0,
        }
    }

    /// The offsets the kernel programs need, each checked for the size the programs read.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        const PTR: u32 = 8;
        Ok(KernelOffsets {
            task_pid: self.field_sized("task_struct", "pid", 4)?,
            task_tgid: self.field_sized("task_struct", "tgid", 4)?,
            task_real_parent: self.field_sized("task_struct", "real_parent", PTR)?,
            task_group_leader: self.field_sized("task_struct", "group_leader", PTR)?,
            task_start_boottime: self.field_sized("task_struct", "start_boottime", 8)?,
            task_mm: self.field_sized("task_struct", "mm", PTR)?,
            task_signal: self.field_sized("task_struct", "signal", PTR)?,
            signal_live: self.field_sized("signal_struct", "live", 4)?,
            mm_arg_start: self.field_sized("mm_struct", "arg_start", 8)?,
            mm_arg_end: self.field_sized("mm_struct", "arg_end", 8)?,
            bprm_file: self.field_sized("linux_binprm", "file", PTR)?,
            bprm_filename: self.field_sized("linux_binprm", "filename", PTR)?,
            file_inode: self.field_sized("file", "f_inode", PTR)?,
            file_path: self.field_sized("file", "f_path", 16)?,
            inode_ino: self.field_sized("inode", "i_ino", 8)?,
            inode_sb: self.field_sized("inode", "i_sb", PTR)?,
            inode_nlink: self.field_sized("inode", "i_nlink", 4)?,
            sb_dev: self.field_sized("super_block", "s_dev", 4)?,
            file_flags: self.field_sized("file", "f_flags", 4)?,
            file_mode: self.field_sized("file", "f_mode", 4)?,
            mm_exe_file: self.field_sized("mm_struct", "exe_file", PTR)?,
            vma_file: self.field_sized("vm_area_struct", "vm_file", PTR)?,
            dentry_inode: self.field_sized("dentry", "d_inode", PTR)?,
        })
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, BtfError> {
        let b = self
            .data
            .get(self.at..self.at + 4)
            .ok_or_else(|| BtfError::Malformed("type section cut short".into()))?;
        self.at += 4;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn skip(&mut self, n: usize) -> Result<(), BtfError> {
        if self.at + n > self.data.len() {
            return Err(BtfError::Malformed("type section cut short".into()));
        }
        self.at += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF blobs for tests, type by type.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }
        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        fn push(&mut self, words: &[u32]) -> u32 {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }
        fn int(&mut self, name: &str, size: u32) -> u32 {
            let n = self.str(name);
            self.push(&[n, 1 << 24, size, size * 8])
        }
        fn ptr(&mut self, to: u32) -> u32 {
            self.push(&[0, 2 << 24, to])
        }
        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            let n = self.str(name);
            self.push(&[n, 8 << 24, to])
        }
        /// members: (name, type, bit offset, bitfield size)
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let n = self.str(name);
            let kind_flag = members.iter().any(|m| m.3 != 0) as u32;
            let mut words = vec![
                n,
                (kind_flag << 31) | (kind << 24) | members.len() as u32,
                size,
            ];
            for &(name, ty, bits, bitfield) in members {
                let mn = self.str(name);
                words.extend([
                    mn,
                    ty,
                    if kind_flag == 1 {
                        (bitfield << 24) | bits
                    } else {
                        bits
                    },
                ]);
            }
            self.push(&words)
        }
        fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for w in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let ulong = b.int("long unsigned int", 8);
        let pid_t = b.typedef("pid_t", int);
        let inner = b.composite(
            4,
            "",
            16,
            &[("arg_start", ulong, 0, 0), ("arg_end", ulong, 64, 0)],
        );
        let mm = b.composite(
            4,
            "mm_struct",
            48,
            &[("count", int, 0, 0), ("", inner, 128, 0)],
        );
        let mm_ptr = b.ptr(mm);
        b.composite(
            4,
            "task_struct",
            32,
            &[
                ("pid", pid_t, 32, 0),
                ("mm", mm_ptr, 64, 0),
                ("flags", int, 130, 3),
            ],
        );
        let btf = Btf::parse(&b.build()).expect("parse");

        assert_eq!(btf.field("task_struct", "pid").unwrap(), (4, 4));
        assert_eq!(btf.field("task_struct", "mm").unwrap(), (8, 8));
        assert_eq!(btf.field("mm_struct", "arg_start").unwrap(), (16, 8));
        assert_eq!(btf.field("mm_struct", "arg_end").unwrap(), (24, 8));
    }

    #[test]
    fn rejects_missing_fields_bitfields_and_wrong_sizes() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.composite(
            4,
            "task_struct",
            16,
            &[("pid", int, 0, 0), ("flags", int, 33, 3)],
        );
        let btf = Btf::parse(&b.build()).expect("parse");

        assert!(matches!(
            btf.field("task_struct", "tgid"),
            Err(BtfError::NoField { .. })
        ));
        assert!(matches!(
            btf.field("cred", "uid"),
            Err(BtfError::NoStruct(_))
        ));
        assert!(matches!(
            btf.field("task_struct", "flags"),
            Err(BtfError::Bitfield { .. })
        ));
        assert!(matches!(
            btf.field_sized("task_struct", "pid", 8),
            Err(BtfError::Size {
                found: 4,
                expected: 8,
                ..
            })
        ));
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(matches!(
            Btf::parse(&[0x9f, 0xeb, 1, 0]),
            Err(BtfError::Malformed(_))
        ));
        assert!(matches!(
            Btf::parse(b"not btf at all, definitely not"),
            Err(BtfError::Malformed(_))
        ));
        let mut blob = Builder::new();
        blob.int("int", 4);
        let mut bytes = blob.build();
        // Claim a longer type section than there is.
        bytes[12] = 200;
        assert!(matches!(Btf::parse(&bytes), Err(BtfError::Malformed(_))));
    }

    /// The running kernel's BTF yields every offset the programs need. Needs only read
    /// access to /sys/kernel/btf/vmlinux, which every kernel with BTF gives to all users.
    #[test]
    fn resolves_offsets_on_this_kernel() {
        let btf = Btf::from_sys_fs().expect("this kernel publishes BTF at /sys/kernel/btf/vmlinux");
        let off = btf
            .kernel_offsets()
            .expect("every field the programs read exists");
        assert!(off.task_tgid > 0 && off.task_tgid != off.task_pid);
        assert!(off.mm_arg_end == off.mm_arg_start + 8, "{off:?}");
    }
}
