"""Nodes graphs are made of: the agent node factory, the guarded agent call, classifiers."""

from switchyard.nodes.agent import make_agent_node
from switchyard.nodes.call import acall_agent, call_agent
from switchyard.nodes.chain import AgentChain, default_middleware
from switchyard.nodes.classifiers import Classifier, Decision, LexicalClassifier, LLMClassifier
from switchyard.nodes.record import AgentReply, OutputValidationError

__all__ = [
    "AgentChain",
    "AgentReply",
    "Classifier",
    "Decision",
    "LLMClassifier",
    "LexicalClassifier",
    "OutputValidationError",
    "acall_agent",
    "call_agent",
    "default_middleware",
    "make_agent_node",
]
