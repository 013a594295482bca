"""Refusing a SavedModel whose graph can touch the machine, before anything of it runs: the check TensorFlow's
`saved_model_cli scan` makes.

TensorFlow's SECURITY.md: a SavedModel is a program. Its graph can write and read files, print to a `file://`
stream, or call Python, and tf.saved_model.load runs some of it (resource initializers) before a single call.
`saved_model_cli scan` lists each MetaGraph's ops (meta_graph.ops_used_by_graph_def) and reports those in its
_OP_DENYLIST {WriteFile, ReadFile, PrintV2}. `denied_ops` does the same on saved_model.pb, parsed with TensorFlow's
own protobuf (the file tf.saved_model.load reads first), with two differences:
- it reads every function of the graph's library, not only those reached through (Stateful)PartitionedCall: a
  While body, a dataset's map function or an initializer runs as well;
- DENIED_OPS extends the deny list to every TensorFlow 2.21 op that writes, reads or lists files, prints, calls
  Python or a debugger, or runs a graph it carries as a string (which no scan can see into).
The checkpoint ops every SavedModel holds (SaveV2, RestoreV2, MergeV2Checkpoints in the functions its
`saver_def` names, which restore the variables) are allowed there, and only where nothing else calls them.
"""
from __future__ import annotations

from pathlib import Path

from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2

TRUST_FLAG = "--trust-saved-model"
# what an op does -> the ops that do it (tf.raw_ops of TensorFlow 2.21)
DENIED_OPS = {
    "writes files": ("WriteFile", "Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "SaveDataset",
                     "SaveDatasetV2", "DistributedSave", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
                     "SnapshotDataset", "SnapshotDatasetV2", "CreateSummaryFileWriter", "CreateSummaryDbWriter",
                     "SummaryWriter", "WriteSummary", "WriteScalarSummary", "WriteHistogramSummary",
                     "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary", "WriteRawProtoSummary",
                     "ImportEvent", "FlushSummaryWriter", "CloseSummaryWriter", "StatsAggregatorSetSummaryWriter"),
    "reads files": ("ReadFile", "Restore", "RestoreV2", "RestoreSlice", "ImmutableConst", "WholeFileReader",
                    "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2", "TFRecordReader", "TFRecordReaderV2",
                    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "IdentityReader", "IdentityReaderV2",
                    "LMDBReader", "ReaderRead", "ReaderReadV2", "ReaderReadUpTo", "ReaderReadUpToV2",
                    "ReaderRestoreState", "ReaderRestoreStateV2", "RecordInput", "TFRecordDataset",
                    "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2",
                    "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset", "SqlDataset", "ExperimentalSqlDataset",
                    "LMDBDataset", "ExperimentalLMDBDataset", "LoadDataset", "SnapshotDatasetReader",
                    "SnapshotNestedDatasetReader", "SnapshotChunkDataset", "ListSnapshotChunksDataset",
                    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "LoadAndRemapMatrix",
                    "GenerateVocabRemapping", "DecodeProtoV2", "EncodeProto"),  # the last two: descriptor files
    "lists files": ("MatchingFiles", "MatchingFilesDataset", "ExperimentalMatchingFilesDataset"),
    "prints, to a file:// stream too": ("Print", "PrintV2"),
    "runs Python code": ("PyFunc", "PyFuncStateless", "EagerPyFunc"),
    "sends tensors to a debugger's file or URL": ("DebugIdentity", "DebugIdentityV2", "DebugIdentityV3",
                                                   "DebugNanCount", "DebugNumericSummary", "DebugNumericSummaryV2"),
    "runs a graph it carries as a string or on another machine": ("DatasetFromGraph", "RemoteCall"),
    "changes file-system settings": ("FileSystemSetConfiguration",),
    "ends the process": ("Abort",),
}
WHAT_OP_DOES = {op: what for what, ops in DENIED_OPS.items() for op in ops}
SAVER_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints"})  # tf.train.Checkpoint's, in the saver's functions


class UntrustedSavedModel(ValueError):
    """A SavedModel holding DENIED_OPS: a ValueError, so the scripts' one-sentence handlers report it."""

    def __init__(self, path, found: dict[str, str]):
        op, where = next(iter(found.items()))
        others = f" (and {', '.join(list(found)[1:])})" if len(found) > 1 else ""
        super().__init__(f"{path} holds the TensorFlow op {op}{others} in {where}, which {WHAT_OP_DOES[op]} on "
                         "this machine, so it is not run (as saved_model_cli scan would flag it); if you trust the "
                         f"file, pass {TRUST_FLAG}")


def _called_functions(node) -> set[str]:
    """Names of the library functions a NodeDef calls through any attribute (PartitionedCall's f, While's body,
    If's branches, a dataset's map function...)."""
    names = set()
    for value in node.attr.values():
        kind = value.WhichOneof("value")
        if kind == "func":
            names.add(value.func.name)
        elif kind == "list":
            names.update(function.name for function in value.list.func)
    return names


def _reachable(roots: set[str], functions: dict) -> set[str]:
    """roots and every library function they call, transitively."""
    seen, todo = set(), [name for name in roots if name in functions]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [callee for node in functions[name].node_def for callee in _called_functions(node)
                     if callee in functions]
    return seen


def _saver_only_functions(meta_graph, functions: dict) -> set[str]:
    """The library functions only the saver_def's save and restore nodes reach."""
    saver = meta_graph.saver_def
    saver_nodes = {saver.restore_op_name, saver.save_tensor_name.split(":")[0]} - {""}
    nodes = meta_graph.graph_def.node
    from_saver = _reachable({f for n in nodes if n.name in saver_nodes for f in _called_functions(n)}, functions)
    elsewhere = {f for n in nodes if n.name not in saver_nodes for f in _called_functions(n)}
    return from_saver - _reachable(elsewhere | (set(functions) - from_saver), functions)


def denied_ops(saved_model_dir) -> dict[str, str]:
    """{op: where} for each op of DENIED_OPS in any MetaGraph of saved_model_dir/saved_model.pb, where is "the
    graph" or "function NAME"; empty for a clean graph. ValueError for a file that is not a SavedModel proto."""
    path = Path(saved_model_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(path.read_bytes())
    except (DecodeError, OSError) as err:
        reason = err.strerror if isinstance(err, OSError) else f"{path.name} does not parse"
        raise ValueError(f"{saved_model_dir} is not a readable SavedModel ({reason}); export it again") from None
    found = {}
    for meta_graph in saved_model.meta_graphs:
        functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}
        saver_only = _saver_only_functions(meta_graph, functions)
        for node in meta_graph.graph_def.node:
            if node.op in WHAT_OP_DOES:
                found.setdefault(node.op, "the graph")
        for name, function in sorted(functions.items()):
            allowed = SAVER_OPS if name in saver_only else frozenset()
            for node in function.node_def:
                if node.op in WHAT_OP_DOES and node.op not in allowed:
                    found.setdefault(node.op, f"function {name}")
    return found


def refuse_denied_ops(saved_model_dir) -> None:
    """UntrustedSavedModel naming the first denied op, the file and TRUST_FLAG, when the graph holds any."""
    found = denied_ops(saved_model_dir)
    if found:
        raise UntrustedSavedModel(saved_model_dir, found)
