"""Python client of the model-deployer agent (``model-deployer serve``, JSON-RPC 2.0 over stdio).

- :class:`DeployerClient`: asyncio client; :class:`SyncDeployerClient`: blocking wrapper.
- :mod:`model_deployer_client.graph`: a LangGraph deployment flow with approval gates (needs ``langgraph``).
- :mod:`model_deployer_client.mcp_tools`: the agent's MCP tools as LangChain tools (needs ``mcp``,
  ``langchain-mcp-adapters``).
"""

from .canary import canary_rows, format_canary_table
from .client import DeployerClient, find_binary, format_timestamp, open_client
from .errors import AgentDiedError, DeployerError, ModelDeployerClientError, ProtocolError
from .signing import SSHSigner, canonical_json
from .sync import SyncDeployerClient
from .types import (
    FAILED_STATUSES,
    TERMINAL_STATUSES,
    AbortResult,
    ApproveResult,
    CanaryAnalysis,
    CanaryAnalysisSettings,
    CanarySettings,
    CanaryStepData,
    Deployment,
    DeploymentEvent,
    ExecuteResult,
    FollowResult,
    HistoryResult,
    ListResult,
    LiveInFlight,
    LiveRow,
    LiveStandby,
    ModelDeployerOutput,
    PlanResult,
    Progress,
    RegistryEntry,
    Runtime,
    RollbackResult,
    StatusResult,
    StopResult,
    TrafficShare,
    VersionMetrics,
    parse_timestamp,
)

__all__ = [
    "AbortResult",
    "AgentDiedError",
    "ApproveResult",
    "CanaryAnalysis",
    "CanaryAnalysisSettings",
    "CanarySettings",
    "CanaryStepData",
    "Deployment",
    "DeploymentEvent",
    "DeployerClient",
    "DeployerError",
    "ExecuteResult",
    "FollowResult",
    "HistoryResult",
    "ListResult",
    "LiveInFlight",
    "LiveRow",
    "LiveStandby",
    "ModelDeployerClientError",
    "ModelDeployerOutput",
    "PlanResult",
    "Progress",
    "ProtocolError",
    "RegistryEntry",
    "Runtime",
    "RollbackResult",
    "SSHSigner",
    "StatusResult",
    "StopResult",
    "SyncDeployerClient",
    "FAILED_STATUSES",
    "TERMINAL_STATUSES",
    "TrafficShare",
    "VersionMetrics",
    "canary_rows",
    "canonical_json",
    "find_binary",
    "format_canary_table",
    "format_timestamp",
    "open_client",
    "parse_timestamp",
]

__version__ = "0.1.0"
