//! Parquet shards of packed sequences: one column `tokens`, a FixedSizeList of UInt16 or UInt32
//! with `seq_len + 1` entries per row.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, FixedSizeListArray, RecordBatch, UInt16Array, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{DataError, Result};
use crate::manifest::{ShardInfo, TokenDtype};

/// Name of the single column of every shard.
pub const TOKENS_COLUMN: &str = "tokens";

fn item_type(dtype: TokenDtype) -> DataType {
    match dtype {
        TokenDtype::U16 => DataType::UInt16,
        TokenDtype::U32 => DataType::UInt32,
    }
}

/// Arrow schema of a shard with rows of `width` tokens.
pub fn shard_schema(dtype: TokenDtype, width: usize) -> Arc<Schema> {
    let item = Arc::new(Field::new("item", item_type(dtype), false));
    Arc::new(Schema::new(vec![Field::new(
        TOKENS_COLUMN,
        DataType::FixedSizeList(item, width as i32),
        false,
    )]))
}

/// Writes one domain's sequences of one split into `part-NNNNN.parquet` files in a directory,
/// one row group per `rows_per_row_group` rows, a new file every `rows_per_shard` rows.
pub struct ShardWriter {
    dir: PathBuf,
    rel_dir: String,
    dtype: TokenDtype,
    width: usize,
    rows_per_row_group: usize,
    rows_per_shard: u64,
    buffer: Vec<u32>,
    writer: Option<(ArrowWriter<File>, PathBuf, u64)>,
    shards: Vec<ShardInfo>,
}

impl ShardWriter {
    /// A writer into `root/rel_dir` (created on the first row).
    pub fn new(
        root: &Path,
        rel_dir: String,
        dtype: TokenDtype,
        width: usize,
        rows_per_row_group: usize,
        row_groups_per_shard: usize,
    ) -> Self {
        ShardWriter {
            dir: root.join(&rel_dir),
            rel_dir,
            dtype,
            width,
            rows_per_row_group,
            rows_per_shard: (rows_per_row_group * row_groups_per_shard) as u64,
            buffer: Vec::with_capacity(rows_per_row_group * width),
            writer: None,
            shards: Vec::new(),
        }
    }

    /// Appends one sequence of exactly `width` tokens.
    pub fn push(&mut self, sequence: &[u32]) -> Result<()> {
        debug_assert_eq!(sequence.len(), self.width);
        self.buffer.extend_from_slice(sequence);
        if self.buffer.len() == self.rows_per_row_group * self.width {
            self.flush_row_group()?;
        }
        Ok(())
    }

    fn flush_row_group(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            std::fs::create_dir_all(&self.dir).map_err(|e| DataError::io(&self.dir, e))?;
            let path = self
                .dir
                .join(format!("part-{:05}.parquet", self.shards.len()));
            let file = File::create(&path).map_err(|e| DataError::io(&path, e))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1")))
                .set_max_row_group_size(self.rows_per_row_group)
                // Token ids have high cardinality: dictionaries cost time and rarely pay.
                .set_dictionary_enabled(false)
                .build();
            let writer =
                ArrowWriter::try_new(file, shard_schema(self.dtype, self.width), Some(props))
                    .map_err(|e| DataError::parquet(&path, e))?;
            self.writer = Some((writer, path, 0));
        }
        let rows = self.buffer.len() / self.width;
        let values: ArrayRef = match self.dtype {
            TokenDtype::U16 => Arc::new(UInt16Array::from_iter_values(
                // The dtype was chosen from the vocabulary size, so every id fits.
                self.buffer.iter().map(|&t| t as u16),
            )),
            TokenDtype::U32 => Arc::new(UInt32Array::from_iter_values(self.buffer.iter().copied())),
        };
        let item = Arc::new(Field::new("item", item_type(self.dtype), false));
        let (writer, path, written) = self.writer.as_mut().expect("opened above");
        let list = FixedSizeListArray::try_new(item, self.width as i32, values, None)
            .map_err(|e| DataError::parquet(&*path, e))?;
        let batch =
            RecordBatch::try_new(shard_schema(self.dtype, self.width), vec![Arc::new(list)])
                .map_err(|e| DataError::parquet(&*path, e))?;
        writer
            .write(&batch)
            .map_err(|e| DataError::parquet(&*path, e))?;
        writer.flush().map_err(|e| DataError::parquet(&*path, e))?;
        *written += rows as u64;
        self.buffer.clear();
        if *written >= self.rows_per_shard {
            self.close_shard()?;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        if let Some((writer, path, rows)) = self.writer.take() {
            writer.close().map_err(|e| DataError::parquet(&path, e))?;
            let name = path.file_name().expect("has a name").to_string_lossy();
            self.shards.push(ShardInfo {
                file: format!("{}/{}", self.rel_dir, name),
                rows,
            });
        }
        Ok(())
    }

    /// Writes what is buffered, closes the last file and returns the shards written.
    pub fn finish(mut self) -> Result<Vec<ShardInfo>> {
        self.flush_row_group()?;
        self.close_shard()?;
        Ok(self.shards)
    }
}

/// Cached footer of one shard, so reading a row group does not parse the footer again.
#[derive(Clone)]
pub struct ShardHandle {
    path: PathBuf,
    metadata: ArrowReaderMetadata,
}

impl ShardHandle {
    /// Opens a shard and checks that its schema is the one the manifest promises.
    pub fn open(path: &Path, dtype: TokenDtype, width: usize) -> Result<ShardHandle> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| DataError::parquet(path, e))?;
        let expected = shard_schema(dtype, width);
        let found = metadata.schema();
        if found.fields().len() != 1
            || found.field(0).name() != TOKENS_COLUMN
            || found.field(0).data_type() != expected.field(0).data_type()
        {
            return Err(DataError::parquet(
                path,
                format!(
                    "schema is {:?}, expected one column `{TOKENS_COLUMN}` of {:?}",
                    found.fields(),
                    expected.field(0).data_type()
                ),
            ));
        }
        Ok(ShardHandle {
            path: path.to_path_buf(),
            metadata,
        })
    }

    /// Number of row groups.
    pub fn num_row_groups(&self) -> usize {
        self.metadata.metadata().num_row_groups()
    }

    /// Rows in row group `index`.
    pub fn row_group_rows(&self, index: usize) -> usize {
        self.metadata.metadata().row_group(index).num_rows() as usize
    }

    /// Reads row group `index` as flat tokens, `rows * width` of them.
    pub fn read_row_group(&self, index: usize, width: usize) -> Result<Vec<u32>> {
        let file = File::open(&self.path).map_err(|e| DataError::io(&self.path, e))?;
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
                .with_row_groups(vec![index])
                .with_batch_size(self.row_group_rows(index).max(1))
                .build()
                .map_err(|e| DataError::parquet(&self.path, e))?;
        let mut out = Vec::with_capacity(self.row_group_rows(index) * width);
        for batch in reader {
            let batch = batch.map_err(|e| DataError::parquet(&self.path, e))?;
            let list = batch
                .column(0)
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .ok_or_else(|| DataError::parquet(&self.path, "column is not a FixedSizeList"))?;
            if list.value_length() as usize != width {
                return Err(DataError::parquet(
                    &self.path,
                    format!("rows have {} tokens, expected {width}", list.value_length()),
                ));
            }
            let values = list.values();
            // A sliced list starts `offset` rows into its values.
            let start = list.offset() * width;
            let end = start + list.len() * width;
            if let Some(v) = values.as_any().downcast_ref::<UInt16Array>() {
                out.extend(v.values()[start..end].iter().map(|&t| t as u32));
            } else if let Some(v) = values.as_any().downcast_ref::<UInt32Array>() {
                out.extend_from_slice(&v.values()[start..end]);
            } else {
                return Err(DataError::parquet(
                    &self.path,
                    "tokens are neither u16 nor u32",
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_row_groups_and_shards() {
        let dir = tempfile::tempdir().unwrap();
        for dtype in [TokenDtype::U16, TokenDtype::U32] {
            let mut w = ShardWriter::new(dir.path(), format!("x-{dtype:?}"), dtype, 3, 2, 2);
            for i in 0..7u32 {
                w.push(&[i, i + 1, 70_000 % 60_000 + i]).unwrap();
            }
            let shards = w.finish().unwrap();
            // 2 rows per group, 2 groups per shard: 4 + 3 rows.
            assert_eq!(
                shards.iter().map(|s| s.rows).collect::<Vec<_>>(),
                vec![4, 3]
            );
            let h = ShardHandle::open(&dir.path().join(&shards[1].file), dtype, 3).unwrap();
            assert_eq!(h.num_row_groups(), 2);
            assert_eq!(h.row_group_rows(1), 1);
            assert_eq!(h.read_row_group(1, 3).unwrap(), vec![6, 7, 10_006]);
            assert!(ShardHandle::open(&dir.path().join(&shards[1].file), dtype, 4).is_err());
        }
    }
}
