"""The chat-style retrieval assistant: multi-turn refinement of a composed image query, persisted per thread.

`ChatSession` (cirgraph.chat.session) is the SDK face, `cirgraph chat` the terminal face and `cirgraph ui` the web
face (cirgraph.chat.api); all three drive the same conversation graph (cirgraph.chat.graph) over a ChatStore.
"""
