"""Nodes graphs are made of: agent nodes, classifiers and the classify node."""

from switchyard.nodes.agent import AgentReply, acall_agent, call_agent, make_agent_node
from switchyard.nodes.classifiers import Classifier, Decision, LexicalClassifier, LLMClassifier

__all__ = [
    "AgentReply",
    "Classifier",
    "Decision",
    "LLMClassifier",
    "LexicalClassifier",
    "acall_agent",
    "call_agent",
    "make_agent_node",
]
