"""A ROS robot through rosbridge v2 over WebSocket (`link`, schemes ws:// and wss://)."""
