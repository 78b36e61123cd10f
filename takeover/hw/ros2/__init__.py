"""Native ROS 2 robots over rclpy (`ros2://[namespace]`, docs/ros2.md). Needs the `ros2` extra."""
