"""Nodes graphs are made of: agent nodes, classifiers and the classify node."""

from nodes.agent import AgentReply, acall_agent, call_agent, make_agent_node
from nodes.classifiers import Classifier, Decision, LexicalClassifier, LLMClassifier

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
