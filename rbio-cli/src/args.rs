//! The command line: typed clap-derive arguments for every subcommand, nothing else.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use rbio_recovery::KeyNamespace;

use rbio_engines::{
    BringupSettings, EngineConfig, EngineKind, LayoutFlags, WINDOW_DEFAULT, WINDOW_MAX, WORKERS_MAX,
};

/// The most entries `demo`, `prepare` and `bench` make: far beyond a real checkpoint
/// (LMCache's default 256 MiB metadata region holds about 700k), and small enough that no
/// size computed from it overflows.
pub const ENTRIES_MAX: u64 = 100_000_000;

/// The most devices one `rbio bringup` takes: each gets a thread and an engine.
pub const DEVICES_MAX: usize = 64;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  usage: bad arguments, or an action refused without --force
  2  device, layout or engine error: nothing was recovered (inspect: a mirror was unreadable)
  3  bringup recovered the index, but some slot headers or a checkpoint mirror were unreadable
     (a newer checkpoint may have been in that mirror)
  4  bringup ignored the checkpoint as a whole (the index starts empty; the report says why;
     inspect: bringup would ignore the chosen checkpoint)
  5  bench: a row's speed-up over serial fell below the --baseline by more than --margin
141  stdout's reader left before the output was all written (a pipe closed early, as by
     `| head`): the command stops quietly, as if SIGPIPE had ended it (128 + 13)
Bringup of several devices exits with the most severe of theirs: 2, then 4, then 3, then 0.
Output that cannot be written for another reason (a full disk) is an error: exit 2.";

/// Fast, safe bringup of LMCache raw_block cache devices over pluggable I/O engines.
#[derive(Debug, Parser)]
#[command(name = "rbio", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make an example device in a temporary directory, bring it up with every engine
    /// available here, and print what each found and how long it took.
    Demo(DemoArgs),
    /// Write a raw_block device or image with N entries (headers only, or with payloads).
    Prepare(PrepareArgs),
    /// Bring a raw_block device up: select the checkpoint, apply it, validate every slot
    /// header, and report what was kept, stale, unreadable or rejected.
    Bringup(BringupArgs),
    /// Show both checkpoint mirrors (seq, length, CRC), the chosen checkpoint and its entries,
    /// without reading any slot.
    Inspect(InspectArgs),
    /// Measure bringup with every engine and setting against the serial engine and fio.
    Bench(BenchArgs),
}

/// The raw_block layout, named and defaulted as in LMCache's configuration.
#[derive(Clone, Debug, Args)]
#[command(
    next_help_heading = "Layout (LMCache's configuration names and defaults; bringup and \
    inspect read it from the device when no geometry flag is given)"
)]
pub struct LayoutArgs {
    /// I/O alignment: a power of two [default: 4096].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub block_align: Option<u64>,
    /// Bytes reserved for the header at the start of every slot [default: 4096].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub header_bytes: Option<u64>,
    /// Bytes per slot, header included [default: 1MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub slot_bytes: Option<u64>,
    /// Bytes of the metadata region (both checkpoint mirrors) at the start of the device
    /// [default: 256MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub meta_total_bytes: Option<u64>,
    /// Capacity to use; 0 means the whole device [default: 0].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub capacity_bytes: Option<u64>,
    /// Magic at the start of each checkpoint mirror: exactly 8 ASCII bytes.
    #[arg(long, value_name = "MAGIC", default_value = "LMCIDX01", value_parser = parse_magic)]
    pub meta_magic: [u8; 8],
    /// Version in each checkpoint mirror header.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub meta_version: u32,
    /// How identities are derived from keys.
    #[arg(long, value_enum, default_value_t = NamespaceArg::Object)]
    pub namespace: NamespaceArg,
}

impl LayoutArgs {
    /// The flags as the library takes them (geometry `None` where not given).
    pub fn flags(&self) -> LayoutFlags {
        LayoutFlags {
            block_align: self.block_align,
            header_bytes: self.header_bytes,
            slot_bytes: self.slot_bytes,
            meta_total_bytes: self.meta_total_bytes,
            capacity_bytes: self.capacity_bytes,
            meta_magic: self.meta_magic,
            meta_version: self.meta_version,
            namespace: self.namespace.into(),
        }
    }
}

/// The key namespace, as LMCache names it.
/// How the checkpoint's recorded `device_path` is checked.
#[derive(Clone, Debug, Args)]
pub struct DevicePathArgs {
    /// Accept a checkpoint whose recorded device_path names another device (an image copied
    /// elsewhere).
    #[arg(long, conflicts_with = "strict_device_path")]
    pub ignore_device_path: bool,
    /// Compare the recorded device_path with the configured one as strings, as LMCache does
    /// [default: by device, so a symlink, a relative path or the NVMe generic device match].
    #[arg(long)]
    pub strict_device_path: bool,
    /// The path the checkpoint's device_path must name [default: DEVICE as given].
    #[arg(long, value_name = "PATH")]
    pub device_path: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NamespaceArg {
    /// BLAKE2b-8 of the encoded object key (LMCache's default).
    Object,
    /// The chunk hash of a legacy `model@world@worker@hash@dtype` key.
    Legacy,
}

impl From<NamespaceArg> for KeyNamespace {
    fn from(namespace: NamespaceArg) -> KeyNamespace {
        match namespace {
            NamespaceArg::Object => KeyNamespace::Object,
            NamespaceArg::Legacy => KeyNamespace::Legacy,
        }
    }
}

/// Which engine reads the device, and how.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Engine")]
pub struct EngineArgs {
    /// The I/O engine: serial, posix, uring or nvme [default: the fastest available: uring,
    /// else posix].
    #[arg(long, value_name = "ENGINE", value_parser = parse_engine)]
    pub engine: Option<EngineKind>,
    /// posix: worker threads, 1 to 256 [default: from the device and core count].
    #[arg(long, value_name = "N", value_parser = count_in(1, WORKERS_MAX as u64))]
    pub workers: Option<usize>,
    /// Header reads in flight at once, 1 to 32768 (the io_uring window, the validation
    /// window).
    #[arg(long, value_name = "OPS", default_value_t = WINDOW_DEFAULT,
          value_parser = count_in(1, WINDOW_MAX as u64))]
    pub window: usize,
    /// uring: hand the kernel at most this many SQEs per io_uring_enter [default: a whole
    /// batch per enter]. 1 dispatches each read at once: faster on disks where the kernel
    /// prepares requests slowly (virtualized ones); leave the default on real NVMe.
    #[arg(long, value_name = "N")]
    pub sqes_per_enter: Option<usize>,
    /// uring, nvme: read into registered (fixed) buffers.
    #[arg(long, value_name = "on|off", default_value = "on", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub fixed_buffers: bool,
    /// Open the device with O_DIRECT, bypassing the page cache (bringup and inspect do by
    /// default, falling back to the page cache with a notice where the file system refuses
    /// it; prepare only when asked).
    #[arg(long, conflicts_with = "buffered")]
    pub direct: bool,
    /// Read through the page cache instead of O_DIRECT (bringup, inspect).
    #[arg(long)]
    pub buffered: bool,
}

impl EngineArgs {
    /// The engine configuration these flags describe.
    pub fn config(&self) -> EngineConfig {
        self.settings().engine_config()
    }

    /// Bringup's settings with these engine flags and every other one at its default.
    fn settings(&self) -> BringupSettings {
        BringupSettings {
            engine: self.engine,
            workers: self.workers,
            window: self.window,
            sqes_per_enter: self.sqes_per_enter,
            fixed_buffers: self.fixed_buffers,
            buffered: self.buffered,
            ..BringupSettings::default()
        }
    }
}

impl BringupArgs {
    /// The settings the library's bringup takes.
    pub fn settings(&self) -> BringupSettings {
        BringupSettings {
            layout: self.layout.flags(),
            op_timeout: self.op_timeout,
            ignore_device_path: self.path_check.ignore_device_path,
            strict_device_path: self.path_check.strict_device_path,
            device_path: self.path_check.device_path.clone(),
            verify: !self.no_verify,
            drop_unreadable: self.drop_unreadable,
            entries: self.entries,
            ..self.engine.settings()
        }
    }
}

impl InspectArgs {
    /// The settings the library's inspection takes.
    pub fn settings(&self) -> BringupSettings {
        BringupSettings {
            layout: self.layout.flags(),
            ignore_device_path: self.path_check.ignore_device_path,
            strict_device_path: self.path_check.strict_device_path,
            device_path: self.path_check.device_path.clone(),
            entries: self.entries,
            ..self.engine.settings()
        }
    }
}

/// `rbio demo`.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Entries in the example device (at most 100,000,000).
    #[arg(long, value_name = "N", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(1..=ENTRIES_MAX))]
    pub entries: u64,
    /// Read through the page cache instead of O_DIRECT (the demo's default wherever the
    /// temporary directory's file system takes it: cold reads without touching the system).
    #[arg(long)]
    pub buffered: bool,
    /// Drop the whole machine's page cache before each engine's bringup (root only; every
    /// other program then reads its data back from disk).
    #[arg(long)]
    pub drop_caches: bool,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `rbio prepare`.
#[derive(Clone, Debug, Args)]
pub struct PrepareArgs {
    /// The image file (created or extended to fit) or block device to write.
    pub path: PathBuf,
    /// Entries to write, one per slot (at most 100,000,000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=ENTRIES_MAX))]
    pub entries: u64,
    /// Write payloads too (by default only slot headers, as LMCache's bringup benchmark does).
    #[arg(long)]
    pub payloads: bool,
    /// Damage slot headers after the last checkpoint: `ENTRY:KIND` (repeatable, or
    /// comma-separated), or `random:PER_MILLION` alone (the entries drawn from --seed). KIND:
    /// bad_magic, zeroed, wrong_identity, foreign_identity, wrong_length, payload_flip.
    #[arg(long, value_name = "SPEC", value_delimiter = ',')]
    pub damage: Vec<String>,
    /// Damage the checkpoint mirrors after writing them.
    #[arg(long, value_enum, default_value_t = CheckpointDamageArg::None)]
    pub checkpoint_damage: CheckpointDamageArg,
    /// Checkpoints to write: 2 (the older lists half the entries), 1 or 0.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub checkpoints: u32,
    /// Place entries in shuffled slots instead of slot k for entry k.
    #[arg(long)]
    pub shuffle: bool,
    /// Seed of keys, sizes and shuffling.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// The `device_path` recorded in the checkpoints (empty: matches any path).
    #[arg(long, value_name = "PATH", default_value = "")]
    pub record_device_path: String,
    /// Allow writing to a block device (its contents are destroyed).
    #[arg(long)]
    pub force: bool,
    /// Print what was written as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// The engine writing the image: serial unless --engine is given.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Damage to the checkpoint mirrors, for `rbio prepare`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckpointDamageArg {
    /// Both mirrors as written.
    None,
    /// The newest mirror's payload fails its CRC: the older one wins.
    BadCrcNewest,
    /// The newest mirror's header block is zero: the older one wins.
    ZeroedNewestHeader,
    /// Both mirrors fail: the device reads as empty.
    BothMirrorsBad,
}

/// `rbio bringup`.
#[derive(Clone, Debug, Args)]
pub struct BringupArgs {
    /// The devices or images to bring up, all at once (one engine each), with the same
    /// layout and engine options; one report each, in this order.
    #[arg(value_name = "DEVICE", required = true, num_args = 1..=DEVICES_MAX)]
    pub device: Vec<PathBuf>,
    #[command(flatten)]
    pub path_check: DevicePathArgs,
    /// Skip slot-header validation (LMCache's meta_verify_on_load = false).
    #[arg(long)]
    pub no_verify: bool,
    /// Drop entries whose header could not be read or was never answered, as LMCache does
    /// (default: keep them). Their slots stay off the free list either way.
    #[arg(long)]
    pub drop_unreadable: bool,
    /// posix, uring, nvme: a header read the device has not answered after SECS (fractions
    /// allowed, e.g. 0.5) is unreadable; if nothing comes back for twice that, the headers not
    /// yet read are unreadable too ("device stalled") [default: the engine's, 30 s]. The
    /// serial engine has no timeout.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub op_timeout: Option<Duration>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// List every checkpoint entry with its state and reason (default: only those not kept).
    #[arg(long)]
    pub entries: bool,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `rbio inspect`.
#[derive(Clone, Debug, Args)]
pub struct InspectArgs {
    /// The device or image to inspect.
    pub device: PathBuf,
    /// List the chosen checkpoint's entries.
    #[arg(long)]
    pub entries: bool,
    #[command(flatten)]
    pub path_check: DevicePathArgs,
    /// Print the inspection as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `rbio bench`.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Entry counts to measure (comma-separated, each 1 to 100,000,000) [default:
    /// 10000,100000,1000000; --quick: 10000].
    #[arg(long, value_name = "N,...", value_delimiter = ',',
          value_parser = clap::value_parser!(u64).range(1..=ENTRIES_MAX))]
    pub entries: Vec<u64>,
    /// Runs of each configuration; the table shows the median and the spread.
    #[arg(long, value_name = "N")]
    pub repeat: Option<usize>,
    /// A run CI can afford: 10k entries, one run, fewer configurations, fio only if installed.
    #[arg(long)]
    pub quick: bool,
    /// Only what `rbio bringup` runs by default (serial for the speed-up; posix with its
    /// default workers; io_uring with its defaults at windows 64 and 256), against fio at the
    /// same depths; no several-device table.
    #[arg(long, conflicts_with = "quick")]
    pub default_settings: bool,
    /// Where the benchmark images live (kept and reused across runs).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Read through the page cache instead of O_DIRECT (fio then reads buffered too).
    #[arg(long)]
    pub buffered: bool,
    /// Do not run fio (the "% of fio" column stays empty).
    #[arg(long)]
    pub no_fio: bool,
    /// Write the results as JSON to FILE (usable as a later --baseline).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw bringup time against entries, one line per engine, as an SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Compare each row's speed-up over serial with this saved --json result.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Largest tolerated fall of a row's speed-up against --baseline, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 20.0)]
    pub margin: f64,
}

/// Parses a byte count: an integer with an optional binary suffix (K, KiB, M, MiB, G, GiB, T,
/// TiB; case-insensitive).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count (for example 4096, 64K, 1MiB)"))?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        other => return Err(format!("unknown byte suffix {other:?} (use K, M, G or T)")),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text} does not fit in 64 bits"))
}

/// A count in `min..=max`; out of range is a usage error naming the range.
fn count_in(min: u64, max: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(min..=max)
}

/// Parses a checkpoint magic: exactly 8 ASCII bytes.
fn parse_magic(text: &str) -> Result<[u8; 8], String> {
    let bytes: [u8; 8] = text
        .as_bytes()
        .try_into()
        .map_err(|_| format!("{text:?} is {} bytes, the magic is 8", text.len()))?;
    if !text.is_ascii() {
        return Err(format!("{text:?} is not ASCII"));
    }
    Ok(bytes)
}

/// `--engine`'s value, by the names rbio-engines gives.
/// Parses a positive number of seconds, fractions allowed.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!(
            "{text:?} is not a positive, finite number of seconds"
        )),
    }
}

fn parse_engine(name: &str) -> Result<EngineKind, String> {
    name.parse()
        .map_err(|error: rbio_engines::UnknownEngine| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn op_timeout_takes_positive_fractional_seconds() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("2"), Ok(Duration::from_secs(2)));
        for bad in ["0", "-1", "nan", "inf", "soon", "1e30"] {
            assert!(parse_seconds(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64K"), Ok(65536));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert!(parse_bytes("1.5M").is_err());
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn bringup_defaults_are_the_librarys_and_lmcaches() {
        let cli = Cli::parse_from(["rbio", "bringup", "/dev/x"]);
        let Command::Bringup(args) = cli.command else {
            panic!("bringup")
        };
        // The Python package starts from BringupSettings::default(): same defaults.
        assert_eq!(args.settings(), BringupSettings::default());
        assert_eq!(
            args.layout.flags().layout(),
            rbio_recovery::Layout::default()
        );
    }
}
